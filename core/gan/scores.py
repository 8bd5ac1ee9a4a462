"""Scores that prove, in numbers, that a generator's labels hold and its samples do not collapse.

Label agreement by a trained classifier, diversity within each class against real digits, a Fréchet
distance on a classifier's penultimate features, and the accuracy of a classifier trained on
generated digits only (classification accuracy score).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from core import checkpoints, data
from core.gan.sampling import sample
from core.metrics import per_class_accuracy, weights_digest
from core.models import evaluating
from core.models.cgan import Generator
from core.recipes import recipe
from core.training import Trainer, evaluate

# A shipped generator is scored in full: images per class, and generated images for the classification score.
SHIPPED_PER_CLASS, SHIPPED_CAS_IMAGES = 1000, 60_000


def penultimate_features(model: nn.Module, images: Tensor, dataset: str, *, batch_size: int = 1000) -> Tensor:
    """What a classifier's last fully connected layer sees (N x D), for uint8 images N x 28 x 28."""
    last = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[Tensor] = []
    hook = last.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].float()))
    try:
        with evaluating(model), torch.inference_mode():
            for chunk in images.split(batch_size):
                model(data.normalize(chunk, dataset))
    finally:
        hook.remove()
    return torch.cat(captured)


Gaussian = tuple[Tensor, Tensor]  # (mean, covariance) of a set of features, in float64


def gaussian(features: Tensor) -> Gaussian:
    """The Gaussian fitted to a set of features (rows are samples)."""
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two sets of features (rows are samples)."""
    return gaussian_distance(gaussian(a), gaussian(b))


def gaussian_distance(a: Gaussian, b: Gaussian) -> float:
    """Fréchet distance between two Gaussians."""
    (mean_a, cov_a), (mean_b, cov_b) = a, b
    # trace(sqrt(cov_a cov_b)) from the eigenvalues of sqrt(cov_a) cov_b sqrt(cov_a), which is symmetric.
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def label_agreement(judge: nn.Module, images: Tensor, labels: Tensor, dataset: str) -> tuple[float, list[float]]:
    """Percent of images the judge assigns to their requested class: overall, and per class."""
    judged = evaluate(judge, data.Split(images, labels), dataset)
    classes = len(data.get_spec(dataset).classes)
    return judged.accuracy, per_class_accuracy(judged.predictions, labels, classes).tolist()


def diversity(images: Tensor, labels: Tensor, *, classes: int = 10, per_class: int = 200) -> list[float]:
    """Mean pairwise pixel distance between images of each class (pixels scaled to [0, 1])."""
    result = []
    for c in range(classes):
        chosen = images[labels == c][:per_class].flatten(1).float() / 255
        result.append(torch.pdist(chosen).mean().item())
    return result


@dataclass
class RealReference:
    """What a judge makes of a dataset's real digits: the same for every generator it scores."""

    agreement_per_class: list[float]  # the judge on the real test images
    diversity: list[float]  # per class, of the real test images
    test_features: Gaussian  # of the judge's penultimate features on the real test images
    fid_reference: float  # real training digits against the real test set


def real_reference(judge: checkpoints.ModelRecord, model: nn.Module, dataset: str, *,
                   data_root: str | None = None) -> RealReference:
    """The judge's view of the real digits, from this machine's cache (keyed by the judge's weights file),
    else measured and cached: five sixths of a generator's scoring on a CPU, and the same every time
    (VGG-19 judging MNIST: 11 s a score without the cache)."""
    path = checkpoints.cache_dir() / "gan-reference" / f"{dataset}-{weights_digest(judge.path)}.safetensors"
    try:
        with safe_open(path, framework="pt") as f:
            tensors, fid_reference = {k: f.get_tensor(k) for k in f.keys()}, float(f.metadata()["fid_reference"])
        return RealReference(tensors["agreement_per_class"].tolist(), tensors["diversity"].tolist(),
                             (tensors["mean"], tensors["cov"]), fid_reference)
    except (OSError, SafetensorError, KeyError, ValueError, TypeError):  # not measured here yet, or damaged
        pass
    test = data.load(dataset, train=False, root=data_root)
    train = data.load(dataset, train=True, root=data_root, limit=len(test))
    classes = len(data.get_spec(dataset).classes)
    _, agreement_per_class = label_agreement(model, test.images, test.labels, dataset)
    test_features = gaussian(penultimate_features(model, test.images, dataset))
    reference = RealReference(
        agreement_per_class=agreement_per_class,
        diversity=diversity(test.images, test.labels, classes=classes),
        test_features=test_features,
        fid_reference=gaussian_distance(gaussian(penultimate_features(model, train.images, dataset)), test_features),
    )
    tensors = {"agreement_per_class": torch.tensor(reference.agreement_per_class, dtype=torch.float64),
               "diversity": torch.tensor(reference.diversity, dtype=torch.float64),
               "mean": test_features[0].contiguous(), "cov": test_features[1].contiguous()}
    checkpoints.write_atomic(path, save_safetensors(tensors, metadata={"fid_reference": repr(reference.fid_reference),
                                                                       "judge": str(judge.path)}))
    return reference


@dataclass
class Scores:
    agreement: float  # percent, over all classes
    agreement_per_class: list[float]
    real_agreement_per_class: list[float]  # the judge on real test images: what a perfect generator would get
    diversity_ratio: list[float]  # per class: generated against real, 1.0 = as varied as real digits
    fid: float  # generated against the real test set, on the judge's penultimate features
    fid_reference: float  # real training digits against the real test set: the scale of the number
    cas: float | None  # accuracy on the real test set of a LeNet trained on generated digits only
    judge: str  # the shipped classifier that judged (its arch), and its own test accuracy
    judge_accuracy: float

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v] if isinstance(v, list) else v)
                for k, v in asdict(self).items()}


def score(
    generator: Generator,
    dataset: str,
    *,
    judge: checkpoints.ModelRecord | None = None,
    per_class: int = SHIPPED_PER_CLASS,
    cas_images: int = 0,
    seed: int = 0,
    data_root: str | None = None,
) -> Scores:
    """Every score of a generator, judged by ``judge`` (default: the best shipped classifier);
    ``cas_images`` > 0 also trains a LeNet on that many generated digits."""
    judge = judge or judge_record(dataset)
    model = checkpoints.load_record(judge)
    classes = len(data.get_spec(dataset).classes)
    labels = torch.arange(classes).repeat_interleave(per_class)
    fake = sample(generator, labels, seed=seed)
    real = real_reference(judge, model, dataset, data_root=data_root)
    agreement, agreement_per_class = label_agreement(model, fake, labels, dataset)
    fake_diversity = diversity(fake, labels, classes=classes)
    cas = None
    if cas_images:
        cas = classification_accuracy_score(generator, dataset, images=cas_images, seed=seed, data_root=data_root)
    return Scores(
        agreement=agreement,
        agreement_per_class=agreement_per_class,
        real_agreement_per_class=real.agreement_per_class,
        diversity_ratio=[f / r for f, r in zip(fake_diversity, real.diversity, strict=True)],
        fid=gaussian_distance(gaussian(penultimate_features(model, fake, dataset)), real.test_features),
        fid_reference=real.fid_reference,
        cas=cas,
        judge=judge.arch,
        judge_accuracy=judge.test_accuracy,
    )


def classification_accuracy_score(
    generator: Generator, dataset: str, *, images: int = SHIPPED_CAS_IMAGES, seed: int = 0,
    data_root: str | None = None,
) -> float:
    """Train a LeNet on generated digits only (labels uniform) and test it on the real test set.

    The LeNet trains with its own recipe, as on real digits, so that the score measures the
    generated digits and not a half-trained classifier.
    """
    classes = len(data.get_spec(dataset).classes)
    labels = torch.arange(images) % classes
    generated = data.Split(sample(generator, labels, seed=seed + 1), labels)
    config = replace(recipe("lenet5-relu", dataset), val_split=0.0, patience=0, seed=seed)
    trainer = Trainer(config, data_root=data_root, train_data=generated)
    return trainer.fit().test_accuracy


def judge_record(dataset: str, arch: str | None = None) -> checkpoints.ModelRecord:
    """The shipped classifier that judges whether labels hold: the most accurate one, or ``arch``'s."""
    shipped = [r for r in checkpoints.find_models(dataset, include_runs=False) if arch in (None, r.arch)]
    if not shipped:
        raise ValueError(f"no shipped {dataset} classifier {arch or ''} to judge the generator with")
    return max(shipped, key=lambda r: r.test_accuracy)
