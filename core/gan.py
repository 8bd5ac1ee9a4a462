"""A conditional GAN (Mirza & Osindero, 2014) in DCGAN style: digits of a chosen class.

Both players see the label: the generator G(z, y) gets the one-hot class beside the noise, the
discriminator D(x, y) gets it as ten extra input planes. Images are scaled to [-1, 1] to match G's
tanh; every fake batch draws its labels uniformly from all classes, so no class is left out; the
loss is the non-saturating one with Adam (2e-4, beta1 0.5), as in the DCGAN paper.

The scores prove, in numbers, that the labels hold and the samples do not collapse: label
agreement by a trained classifier, diversity within each class against real digits, a Fréchet
distance on a classifier's penultimate features, and the accuracy of a classifier trained on
generated digits only (classification accuracy score).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core import checkpoints, data, inspect, measure
from core.models import MAX_CLASSES
from core.training import Progress, TrainingError, describe_device, evaluate, resolve_device

LATENT = 64  # length of the noise vector z
ARCH = "cgan-generator"  # how generators are named in the manifests and file metadata
# A shipped generator is scored in full: images per class, and generated images for the classification score.
SHIPPED_PER_CLASS, SHIPPED_CAS_IMAGES = 1000, 60_000
# What a generator may be built with; a weights file's metadata is checked against these first.
MAX_LATENT, MAX_WIDTH = 1024, 512
# Digits per forward pass: G's activations grow with the batch (an export of 60,000 at once peaked at 13.9 GB).
CHUNK = 512


class Generator(nn.Module):
    """z (N x 64) and labels (N,) -> images N x 1 x 28 x 28 in [-1, 1]."""

    def __init__(self, *, num_classes: int = 10, latent: int = LATENT, width: int = 64) -> None:
        super().__init__()
        self.num_classes, self.latent, self.width = num_classes, latent, width
        self.project = nn.Sequential(
            nn.Linear(latent + num_classes, 2 * width * 7 * 7, bias=False),
            nn.BatchNorm1d(2 * width * 7 * 7),
            nn.ReLU(inplace=True),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),  # N x 64 x 14 x 14
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),  # N x 1 x 28 x 28
            nn.Tanh(),
        )

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        h = self.project(torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1))
        return self.upsample(h.view(-1, 2 * self.width, 7, 7))


class Discriminator(nn.Module):
    """Images (N x 1 x 28 x 28) and labels -> one logit each: is this a real digit of that class?"""

    def __init__(self, *, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.net = nn.Sequential(
            nn.Conv2d(1 + num_classes, width, 4, stride=2, padding=1),  # N x 64 x 14 x 14
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),  # N x 128 x 7 x 7
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, 1),
        )

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        planes = F.one_hot(labels, self.num_classes).to(images.dtype)[:, :, None, None]
        planes = planes.expand(-1, -1, images.shape[2], images.shape[3])
        return self.net(torch.cat([images, planes], dim=1)).squeeze(1)


def _init(module: nn.Module) -> None:
    # DCGAN's initialisation: N(0, 0.02) weights, batch-norm scales N(1, 0.02).
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 (N x 28 x 28) -> float N x 1 x 28 x 28 in [-1, 1], the range of G's tanh."""
    return images.unsqueeze(1).float().div(127.5).sub(1)


def to_pixels(images: Tensor) -> Tensor:
    """G's output in [-1, 1] -> uint8 N x 28 x 28."""
    return images.squeeze(1).add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


@dataclass
class GanConfig:
    dataset: str = "mnist"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-4  # Adam, for both players (DCGAN)
    beta1: float = 0.5  # a lower momentum keeps the two-player game stable (DCGAN)
    width: int = 64  # channels of the first conv of D and the last of G
    seed: int = 0
    limit: int | None = None  # train on the first N images only
    log_every: int = 20  # batches between step reports (each one waits for the losses)

    def validate(self) -> None:
        data.get_spec(self.dataset)
        for name, ok, expected in [
            ("epochs", self.epochs >= 1, "at least 1"), ("batch_size", 2 <= self.batch_size <= 4096, "2 to 4096"),
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a positive number"),
            ("beta1", 0 <= self.beta1 < 1, "in [0, 1)"),
            ("width", 1 <= self.width <= MAX_WIDTH, f"1 to {MAX_WIDTH}"),
            ("limit", self.limit is None or self.limit >= 10, "at least 10 images"),
            ("log_every", self.log_every >= 1, "at least 1"),
        ]:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")


@dataclass
class GanStep(Progress):
    d_loss: float  # mean since the previous report
    g_loss: float


@dataclass
class GanEpoch:
    epoch: int
    epochs: int
    d_loss: float
    g_loss: float
    seconds: float
    grid: np.ndarray  # the fixed-noise 10x10 grid after this epoch: rows one z each, columns the classes


@dataclass
class GanResult:
    generator: Generator
    config: GanConfig
    history: list[GanEpoch]
    seconds: float
    device: str
    stopped: bool

    def summary(self) -> dict:
        return {"dataset": self.config.dataset, "epochs": len(self.history), "seconds": round(self.seconds, 1),
                "device": self.device, "stopped": self.stopped, "config": asdict(self.config),
                "history": [{"epoch": e.epoch, "d_loss": e.d_loss, "g_loss": e.g_loss, "seconds": e.seconds}
                            for e in self.history]}


def train_gan(
    config: GanConfig,
    *,
    device: str | torch.device | None = None,
    data_root: str | None = None,
    on_epoch: Callable[[GanEpoch], None] | None = None,
    on_step: Callable[[GanStep], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> GanResult:
    """Train G and D against each other; ``on_epoch`` sees the losses and the fixed-noise grid.

    ``on_step`` gets the losses every ``config.log_every`` batches and at each epoch's end;
    ``stop`` is checked before every batch.
    """
    config.validate()
    device = resolve_device(device)
    started = time.perf_counter()
    real = data.load(config.dataset, train=True, root=data_root, device=device, limit=config.limit)
    classes = len(data.get_spec(config.dataset).classes)
    torch.manual_seed(config.seed)
    generator = Generator(num_classes=classes, width=config.width).to(device)
    discriminator = Discriminator(num_classes=classes, width=config.width).to(device)
    generator.apply(_init)
    discriminator.apply(_init)
    betas = (config.beta1, 0.999)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=betas)
    rng = torch.Generator().manual_seed(config.seed)
    fixed_z = torch.randn(10, LATENT, generator=rng).repeat_interleave(classes, 0).to(device)
    fixed_labels = torch.arange(classes).repeat(10).to(device)
    steps = math.ceil(len(real) / config.batch_size)
    history, stopped = [], False
    for epoch in range(1, config.epochs + 1):
        generator.train()
        discriminator.train()
        epoch_start = time.perf_counter()
        d_total, g_total, done = torch.zeros((), device=device), torch.zeros((), device=device), 0
        d_since, g_since, reported = 0.0, 0.0, 0
        for images, labels in data.batches(real, config.batch_size, shuffle=True, generator=rng):
            if stop and stop():
                stopped = True
                break
            n = len(labels)
            x = to_unit_range(images)
            fake_labels = torch.randint(classes, (n,), generator=rng).to(device)
            fake = generator(torch.randn(n, LATENT, generator=rng).to(device), fake_labels)

            # D: real digits of their class are real, generated ones of theirs are fake.
            d_loss = (F.binary_cross_entropy_with_logits(discriminator(x, labels), torch.ones(n, device=device))
                      + F.binary_cross_entropy_with_logits(discriminator(fake.detach(), fake_labels),
                                                           torch.zeros(n, device=device)))
            d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            d_optimizer.step()

            # G, non-saturating: make D call the fakes real.
            g_loss = F.binary_cross_entropy_with_logits(discriminator(fake, fake_labels), torch.ones(n, device=device))
            g_optimizer.zero_grad(set_to_none=True)
            g_loss.backward()
            g_optimizer.step()

            d_total += d_loss.detach()
            g_total += g_loss.detach()
            done += 1
            if on_step and (done % config.log_every == 0 or done == steps):
                d_now, g_now = d_total.item(), g_total.item()  # waits for the device, so not every batch
                elapsed = time.perf_counter() - epoch_start
                left = (config.epochs - epoch) * steps + steps - done
                on_step(GanStep(epoch=epoch, epochs=config.epochs, step=done, steps_per_epoch=steps,
                                samples_per_s=done * config.batch_size / elapsed, eta_s=left * elapsed / done,
                                d_loss=(d_now - d_since) / (done - reported),
                                g_loss=(g_now - g_since) / (done - reported)))
                d_since, g_since, reported = d_now, g_now, done
        if done == 0:  # stopped before this epoch's first batch
            break
        grid = make_grid(to_pixels(sample_with(generator, fixed_z, fixed_labels)).cpu().numpy(), columns=classes)
        record = GanEpoch(epoch, config.epochs, d_total.item() / done, g_total.item() / done,
                          time.perf_counter() - epoch_start, grid)
        if not (math.isfinite(record.d_loss) and math.isfinite(record.g_loss)):
            raise TrainingError(f"the GAN diverged in epoch {epoch}: lower the learning rate (it was {config.lr:g})")
        history.append(record)
        if on_epoch:
            on_epoch(record)
        if stopped:
            break
    return GanResult(generator.eval(), config, history, time.perf_counter() - started, describe_device(device),
                     stopped)


def epoch_seconds(*, device: str | torch.device | None = None, dataset: str = "mnist",
                  data_root: str | None = None) -> float:
    """How long one epoch of the default recipe takes (the whole training set), for ``bench``."""
    return train_gan(GanConfig(dataset=dataset, epochs=1), device=device, data_root=data_root).history[0].seconds


@torch.inference_mode()
def sample_with(generator: Generator, z: Tensor, labels: Tensor) -> Tensor:
    """G's images (in [-1, 1]) for given noise and labels, in eval mode, without touching its mode."""
    was_training = generator.training
    generator.eval()
    try:
        return generator(z, labels)
    finally:
        generator.train(was_training)


def generate(generator: Generator, z: Tensor, labels: Tensor | Sequence[int]) -> Tensor:
    """uint8 digits (N x 28 x 28) for given noise (N x latent) and labels (N,), ``CHUNK`` at a time."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) and (labels.min() < 0 or labels.max() >= generator.num_classes):
        raise ValueError(f"classes must be 0 to {generator.num_classes - 1}, got {labels.tolist()}")
    device = next(generator.parameters()).device
    # in eval mode each digit depends on its own z and label alone: chunks give one pass's pixels
    # (bit for bit on the CPU, tests/test_gan.py) and memory stays flat for any N
    return torch.cat([to_pixels(sample_with(generator, z_part.to(device), part.to(device))).cpu()
                      for z_part, part in zip(z.split(CHUNK), labels.split(CHUNK), strict=True)])


def noise(seeds: Sequence[int], latent: int = LATENT) -> Tensor:
    """One z per seed (len(seeds) x latent): the same seed is the same z, whatever the class."""
    return torch.stack([torch.randn(latent, generator=torch.Generator().manual_seed(s)) for s in seeds])


def sample(generator: Generator, labels: Tensor | Sequence[int], *, seed: int = 0) -> Tensor:
    """uint8 digits (N x 28 x 28), one per label, reproducible for a seed."""
    z = torch.randn(len(labels), generator.latent, generator=torch.Generator().manual_seed(seed))
    return generate(generator, z, labels)


def class_sweep(generator: Generator, seeds: Sequence[int]) -> Tensor:
    """Each seed's z drawn as every class (rows: seeds, columns: classes): z carries the style, y the class."""
    classes = generator.num_classes
    z = noise(seeds, generator.latent).repeat_interleave(classes, 0)
    return generate(generator, z, torch.arange(classes).repeat(len(seeds)))


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation: a straight line between two Gaussian z's passes through unlikely short
    vectors near the middle, the arc keeps their length typical (White, 2016)."""
    omega = torch.arccos(torch.clamp(F.cosine_similarity(a, b, dim=0), -1.0, 1.0))
    t = t[:, None]
    if omega.abs() < 1e-4:  # (nearly) the same direction: the arc is a line
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def interpolation(generator: Generator, label: int, seed_a: int, seed_b: int, *, steps: int = 10) -> Tensor:
    """One class, ``steps`` digits along the arc from seed_a's z to seed_b's."""
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    a, b = noise([seed_a, seed_b], generator.latent)
    return generate(generator, slerp(a, b, torch.linspace(0, 1, steps)), [label] * steps)


def make_grid(images: np.ndarray, *, columns: int, gap: int = 2) -> np.ndarray:
    """N x H x W uint8 -> one picture, ``columns`` per row, with a dark gap between cells."""
    grid, _ = inspect.mosaic(torch.as_tensor(images).float(), columns=columns, gap=gap)
    return np.nan_to_num(grid).astype(np.uint8)


def png_bytes(pixels: np.ndarray, *, scale: int = 1) -> bytes:
    """A uint8 grey picture as PNG, each pixel ``scale`` x ``scale`` (nearest neighbour keeps digits crisp)."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(pixels))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


# --- a synthetic dataset ----------------------------------------------------------------------

EXPORT_FORMATS = ("csv", "npz", "pt")


def synthetic_dataset(generator: Generator, n: int, *, seed: int = 0, label: int | None = None) -> data.Split:
    """``n`` generated digits of one class, or (``label`` None) of the classes in turn (0, 1, ..., 9,
    0, ...), so that every class has its share."""
    if n < 1:
        raise ValueError(f"the dataset needs at least one digit, got {n}")
    labels = torch.arange(n) % generator.num_classes if label is None else torch.full((n,), label)
    return data.Split(sample(generator, labels, seed=seed), labels)


def export_dataset(
    generator: Generator, n: int, path: Path | str, *, fmt: str, seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write ``n`` generated digits to ``path``, the digits ``synthetic_dataset(generator, n, seed=seed)``
    gives, made ``CHUNK`` at a time: ``csv`` as the original repository's fake_mnist.csv (no header, one
    row per digit: the label, then 784 pixel values), ``npz`` (images, labels) or ``pt`` (a torch dict).

    Memory stays flat: CSV rows are written chunk by chunk, NPZ and PT keep only the uint8 pixels (47 MB
    for 60,000). The file appears whole or not at all, also when ``on_progress(done, total)``, called
    after each chunk, raises to stop.
    """
    _check_format(fmt)
    if n < 1:
        raise ValueError(f"the dataset needs at least one digit, got {n}")
    labels = torch.arange(n) % generator.num_classes  # the classes in turn, as synthetic_dataset
    images = None if fmt == "csv" else torch.empty((n, 28, 28), dtype=torch.uint8)
    # One seeded stream drawn chunk by chunk gives sample()'s z: torch fills normals in blocks of 16 and
    # CHUNK x latent is a multiple of 16 (a last chunk under 16 values, for a latent under 16, differs).
    stream = torch.Generator().manual_seed(seed)
    with checkpoints.atomic_file(Path(path)) as file:
        for start in range(0, n, CHUNK):
            part = labels[start:start + CHUNK]
            pixels = generate(generator, torch.randn(len(part), generator.latent, generator=stream), part)
            if images is None:
                _write_rows(file, pixels, part)
            else:
                images[start:start + len(part)] = pixels
            if on_progress:
                on_progress(start + len(part), n)
        if images is not None:
            _write_arrays(file, images, labels, fmt)


def _check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"the format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")


def _write_rows(file: BinaryIO, images: Tensor, labels: Tensor) -> None:
    # savetxt writes row by row, so rows written chunk by chunk make the same bytes as all at once
    np.savetxt(file, np.column_stack([labels.numpy(), images.flatten(1).numpy()]), fmt="%d", delimiter=",")


def _write_arrays(file: BinaryIO, images: Tensor, labels: Tensor, fmt: str) -> None:
    if fmt == "npz":
        np.savez_compressed(file, images=images.numpy(), labels=labels.numpy())
    else:
        torch.save({"images": images, "labels": labels}, file)


# --- scores -----------------------------------------------------------------------------------

def penultimate_features(model: nn.Module, images: Tensor, dataset: str, *, batch_size: int = 1000) -> Tensor:
    """What a classifier's last fully connected layer sees (N x D), for uint8 images N x 28 x 28."""
    last = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)][-1]
    captured: list[Tensor] = []
    hook = last.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].float()))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for chunk in images.split(batch_size):
                model(data.normalize(chunk, dataset))
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two sets of features (rows are samples)."""
    a, b = a.double(), b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # trace(sqrt(cov_a cov_b)) from the eigenvalues of sqrt(cov_a) cov_b sqrt(cov_a), which is symmetric.
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def label_agreement(judge: nn.Module, images: Tensor, labels: Tensor, dataset: str) -> tuple[float, list[float]]:
    """Percent of images the judge assigns to their requested class: overall, and per class."""
    judged = evaluate(judge, data.Split(images, labels), dataset)
    classes = len(data.get_spec(dataset).classes)
    return judged.accuracy, measure.per_class_accuracy(judged.predictions, labels, classes).tolist()


def diversity(images: Tensor, labels: Tensor, *, classes: int = 10, per_class: int = 200) -> list[float]:
    """Mean pairwise pixel distance between images of each class (pixels scaled to [0, 1])."""
    result = []
    for c in range(classes):
        chosen = images[labels == c][:per_class].flatten(1).float() / 255
        result.append(torch.pdist(chosen).mean().item())
    return result


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
    test = data.load(dataset, train=False, root=data_root)
    train = data.load(dataset, train=True, root=data_root, limit=len(test))
    agreement, agreement_per_class = label_agreement(model, fake, labels, dataset)
    _, real_agreement_per_class = label_agreement(model, test.images, test.labels, dataset)
    real_diversity = diversity(test.images, test.labels, classes=classes)
    fake_diversity = diversity(fake, labels, classes=classes)
    test_features = penultimate_features(model, test.images, dataset)
    cas = None
    if cas_images:
        cas = classification_accuracy_score(generator, dataset, images=cas_images, seed=seed, data_root=data_root)
    return Scores(
        agreement=agreement,
        agreement_per_class=agreement_per_class,
        real_agreement_per_class=real_agreement_per_class,
        diversity_ratio=[f / r for f, r in zip(fake_diversity, real_diversity, strict=True)],
        fid=frechet_distance(penultimate_features(model, fake, dataset), test_features),
        fid_reference=frechet_distance(penultimate_features(model, train.images, dataset), test_features),
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
    from core.recipes import recipe
    from core.training import Trainer

    classes = len(data.get_spec(dataset).classes)
    labels = torch.arange(images) % classes
    generated = data.Split(sample(generator, labels, seed=seed + 1), labels)
    config = replace(recipe("lenet5-relu", dataset), val_split=0.0, seed=seed)
    trainer = Trainer(config, data_root=data_root, train_data=generated)
    return trainer.fit().test_accuracy


# --- weights ----------------------------------------------------------------------------------

def save_generator(result: GanResult, *, folder: Path, scores: Scores, name: str = ARCH,
                   half: bool = False, overwrite: bool = False) -> checkpoints.ModelRecord:
    """``<folder>/<dataset>/<name>.safetensors`` and a manifest entry, like the classifiers' (see
    ``checkpoints.store``: ``overwrite`` for the shipped generator, a file of its own for a run)."""
    name = checkpoints.check_name(name)
    dataset = result.config.dataset
    generator = result.generator
    file = f"{dataset}/{checkpoints.file_stem(name, ARCH)}.safetensors"
    metadata = {"arch": ARCH, "dataset": dataset, "width": str(generator.width), "latent": str(generator.latent),
                "num_classes": str(generator.num_classes)}
    summary = result.summary()
    record = checkpoints.ModelRecord(
        name=name, arch=ARCH, dataset=dataset, file=file, epochs=summary["epochs"], seconds=summary["seconds"],
        device=summary["device"], date=checkpoints.now(), code_version=checkpoints.code_version(),
        config=summary["config"], history=summary["history"], folder=folder, **_score_fields(scores),
    )
    return checkpoints.store(generator, record, metadata, half=half, overwrite=overwrite)


def record_scores(record: checkpoints.ModelRecord, scores: Scores) -> checkpoints.ModelRecord:
    """Put new scores into a generator's manifest entry (after a new judge ships, say)."""
    record = replace(record, **_score_fields(scores))
    checkpoints.add_record(record.folder, record)
    return record


def _score_fields(scores: Scores) -> dict:
    # A generator's "test accuracy" in the manifest is its label agreement.
    return {"test_accuracy": round(scores.agreement, 2), "scores": scores.to_json()}


def load_generator(path: Path | str) -> Generator:
    """A generator from its weights file, its metadata checked before it is built and its tensors
    after (CheckpointError otherwise)."""
    tensors, metadata = checkpoints.read_weights(path)
    if metadata.get("arch") != ARCH:
        raise checkpoints.CheckpointError(f"{path}: holds {metadata.get('arch')!r} weights, not a CGAN generator")

    def number(key: str, default: int, high: int) -> int:
        return int(checkpoints.metadata_number(metadata, key, default=default, low=1, high=high, integer=True,
                                               path=path))

    num_classes = number("num_classes", 10, MAX_CLASSES)
    dataset = metadata.get("dataset")
    classes = len(data.DATASETS[dataset].classes) if dataset in data.DATASETS else num_classes
    if num_classes != classes:  # the pages and the scores ask for every class of the dataset
        raise checkpoints.CheckpointError(f"{path}: metadata num_classes={str(num_classes)!r} does not match "
                                          f"{dataset}'s {classes} classes")
    generator = Generator(num_classes=num_classes, latent=number("latent", LATENT, MAX_LATENT),
                          width=number("width", 64, MAX_WIDTH))
    return checkpoints.fill(generator, tensors, path, ARCH)


def list_generators(dataset: str) -> list[checkpoints.ModelRecord]:
    """A dataset's generators: the shipped one first, then this machine's runs, newest first."""
    found = []
    for folder in (checkpoints.WEIGHTS_DIR, checkpoints.runs_dir()):
        records = [r for r in checkpoints.read_manifest(folder) if r.arch == ARCH and r.dataset == dataset]
        found += sorted(records, key=lambda r: r.date, reverse=True)
    return found


def find_generator(dataset: str) -> checkpoints.ModelRecord | None:
    """The shipped generator of a dataset, else this machine's latest one, else None."""
    found = list_generators(dataset)
    return found[0] if found else None


def judge_record(dataset: str, arch: str | None = None) -> checkpoints.ModelRecord:
    """The shipped classifier that judges whether labels hold: the most accurate one, or ``arch``'s."""
    shipped = [r for r in checkpoints.find_models(dataset, include_runs=False) if arch in (None, r.arch)]
    if not shipped:
        raise ValueError(f"no shipped {dataset} classifier {arch or ''} to judge the generator with")
    return max(shipped, key=lambda r: r.test_accuracy)
