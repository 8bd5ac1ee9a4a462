"""What a trained model gets right and wrong on its test split: answers, confusion, mistakes.

A model's answers on the whole test split are slow to make on a CPU, so they are kept per weights
file: the shipped models' beside them (``weights/predictions``, in git), the others in this machine's
cache beside its runs (``checkpoints.cache_dir()``, outside git).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors

from core import checkpoints, data
from core.checkpoints import ModelRecord
from core.training import resolve_device, use_channels_last


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[true class, predicted class] over a split."""
    pairs = labels.long() * num_classes + predicted.long()
    return torch.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_accuracy(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Percent of each true class's images that are classified right (NaN for an empty class)."""
    counts = confusion_matrix(predicted, labels, num_classes).double()
    return 100 * counts.diagonal() / counts.sum(1)


def mistakes(
    predictions: Predictions,
    labels: torch.Tensor,
    *,
    true_class: int | None = None,
    predicted_class: int | None = None,
) -> torch.Tensor:
    """Indices of the test images a model gets wrong, its most confident mistakes first."""
    wrong = predictions.predicted != labels
    if true_class is not None:
        wrong &= labels == true_class
    if predicted_class is not None:
        wrong &= predictions.predicted == predicted_class
    index = wrong.nonzero().squeeze(1)
    return index[predictions.confidence[index].argsort(descending=True, stable=True)]


@dataclass
class HardExample:
    index: int  # in the test split
    label: int
    wrong: int  # how many models get it wrong
    answer: int  # their most frequent wrong answer


def hardest_examples(predicted: list[torch.Tensor], labels: torch.Tensor, *, count: int = 24) -> list[HardExample]:
    """The test images that most models get wrong (by at least one model), most wrong first."""
    answers = torch.stack(predicted)  # models x N
    wrong = (answers != labels).sum(0)
    examples = []
    for index in wrong.argsort(descending=True, stable=True)[:count].tolist():
        if wrong[index] == 0:
            break
        label = int(labels[index])
        answer = int(answers[:, index][answers[:, index] != label].bincount().argmax())
        examples.append(HardExample(index, label, int(wrong[index]), answer))
    return examples


@dataclass
class Predictions:
    """A trained model's answers on the whole test split of its dataset, in the split's order."""

    predicted: torch.Tensor  # (N,) int64 class
    confidence: torch.Tensor  # (N,) float32 softmax probability of that class


@lru_cache(maxsize=256)
def _digest(path: Path, size: int, modified_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:24]


def weights_digest(path: Path) -> str:
    """A fingerprint of a weights file's content (re-read only when the file changes)."""
    try:
        stat = path.stat()
    except FileNotFoundError as error:
        raise checkpoints.CheckpointError(f"{path}: the weights file is missing") from error
    return _digest(path, stat.st_size, stat.st_mtime_ns)


PREDICTIONS = "predictions"  # the folder beside a manifest that holds its models' answers, by weights digest


def _predictions_files(record: ModelRecord) -> list[Path]:
    """Where a model's answers may be: beside its weights (shipped with them), else this machine's cache."""
    name = f"{weights_digest(record.path)}.safetensors"
    return [record.folder / PREDICTIONS / name, checkpoints.cache_dir() / PREDICTIONS / name]


def cached_predictions(record: ModelRecord, size: int) -> Predictions | None:
    """A model's answers on its test split (``size`` images) if they were computed for this very file."""
    for path in _predictions_files(record):
        try:
            with safe_open(path, framework="pt") as f:
                predicted, confidence = f.get_tensor("predicted").long(), f.get_tensor("confidence")
        except (OSError, SafetensorError, KeyError, ValueError):
            continue
        if len(predicted) == len(confidence) == size:
            return Predictions(predicted, confidence)
    return None


def _encoded(record: ModelRecord, answers: Predictions) -> bytes:
    tensors = {"predicted": answers.predicted.to(torch.uint8), "confidence": answers.confidence}
    return save_safetensors(tensors, metadata={"arch": record.arch, "dataset": record.dataset, "file": record.file})


def ship_predictions(record: ModelRecord, *, data_root: str | None = None) -> Path:
    """Keep a model's answers beside its weights (``weights/predictions`` for a shipped one), so that a
    fresh checkout's Compare page needs no pass over the test set; the answers of the file it replaced go."""
    answers = model_predictions(record, data_root=data_root)
    folder = record.folder / PREDICTIONS
    path = folder / f"{weights_digest(record.path)}.safetensors"
    checkpoints.write_atomic(path, _encoded(record, answers))
    for other in folder.glob("*.safetensors"):
        try:
            with safe_open(other, framework="pt") as f:
                replaced = other != path and (f.metadata() or {}).get("file") == record.file
        except (OSError, SafetensorError):
            replaced = False
        if replaced:
            other.unlink(missing_ok=True)
    return path


@torch.inference_mode()
def model_predictions(
    record: ModelRecord, *, data_root: str | None = None, device: torch.device | str | None = None
) -> Predictions:
    """A model's answers on its test split: shipped beside it or in this machine's cache, else computed and cached.

    The cache is keyed by the weights file's content, so a retrained model is predicted anew.
    Computed in float32 on ``device`` (default: the best available). Raises CheckpointError for a
    missing, corrupt or mismatched weights file.
    """
    test = data.load(record.dataset, train=False, root=data_root)
    cached = cached_predictions(record, len(test))
    if cached is not None:
        return cached
    device = resolve_device(device)
    layout = torch.channels_last if use_channels_last(device) else torch.contiguous_format
    model = checkpoints.load_record(record).to(device, memory_format=layout)
    predicted, confidence = [], []
    for images, _ in data.batches(test.to(device), 500, shuffle=False):
        x = data.normalize(images, record.dataset).contiguous(memory_format=layout)
        probabilities = model(x).float().softmax(1)
        top = probabilities.max(1)
        predicted.append(top.indices.cpu())
        confidence.append(top.values.cpu())
    result = Predictions(torch.cat(predicted), torch.cat(confidence))
    checkpoints.write_atomic(_predictions_files(record)[-1], _encoded(record, result))
    return result
