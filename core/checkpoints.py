"""Trained weights on disk: safetensors files (tensors only, nothing is ever unpickled) and a manifest.

    weights/manifest.json              shipped models (in git)
    weights/<dataset>/<arch>.safetensors
    runs/manifest.json                 this machine's runs (outside git, $MNIST_LAB_RUNS)
    runs/<dataset>/<run name>.safetensors

Every write is atomic (temporary file, fsync, rename), so a crash or a full disk mid-save leaves
the previous file intact. Every load checks the architecture and each tensor's name and shape,
and a bad file raises CheckpointError naming the file and what is wrong with it, for that model
alone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import nn

import core
from core import data
from core.models import get_model, list_models

if TYPE_CHECKING:
    from core.training import Trainer

REPO = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = REPO / "weights"
RUNS_ENV = "MNIST_LAB_RUNS"
MANIFEST = "manifest.json"

_manifest_lock = threading.Lock()  # jobs of one server process save concurrently


class CheckpointError(ValueError):
    """A weights file that cannot be used: missing, corrupt, or for another architecture."""


def runs_dir() -> Path:
    """Where runs are saved: $MNIST_LAB_RUNS, else runs/ beside weights/."""
    return Path(os.environ.get(RUNS_ENV) or REPO / "runs")


@dataclass
class ModelRecord:
    """A trained model's manifest entry; ``file`` is relative to the manifest's folder."""

    name: str  # shown to users: the arch for shipped models, the run name for runs
    arch: str
    dataset: str
    file: str
    test_accuracy: float  # percent, on the full test split
    epochs: int
    seconds: float  # training wall clock
    device: str
    date: str
    code_version: str
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # one entry per epoch
    scores: dict = field(default_factory=dict)  # a generator's scores (its test_accuracy: label agreement)
    folder: Path = field(default=WEIGHTS_DIR, compare=False, repr=False)

    @property
    def path(self) -> Path:
        return self.folder / self.file

    @property
    def shipped(self) -> bool:
        return self.folder.resolve() == WEIGHTS_DIR.resolve()

    def to_json(self) -> dict:
        entry = asdict(self)
        del entry["folder"]
        return entry


def code_version() -> str:
    """The package version, with the git commit when run from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{core.__version__}+{commit}" if commit else core.__version__


def now() -> str:
    """The time of a save, as the manifests store it (ISO 8601 with the offset: sortable as text)."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def safe_name(name: str) -> str:
    """A run name usable as a file name on every OS."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    if not cleaned:
        raise ValueError(f"run name {name!r} has no letters or digits")
    return cleaned[:80]


def write_atomic(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise CheckpointError(f"could not write {path}: {error.strerror or error}") from error
    if os.name == "posix":  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def read_manifest(folder: Path) -> list[ModelRecord]:
    """The records of one folder; a missing manifest is an empty list."""
    path = folder / MANIFEST
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["models"]
        return [ModelRecord(**entry, folder=folder) for entry in entries]
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} is not a valid manifest: {error}") from error


def _write_manifest(folder: Path, records: list[ModelRecord]) -> None:
    records = sorted(records, key=lambda r: (r.dataset, r.file))
    text = json.dumps({"models": [r.to_json() for r in records]}, indent=1)
    write_atomic(folder / MANIFEST, (text + "\n").encode("utf-8"))


def write_weights(module: nn.Module, path: Path, metadata: dict[str, str], *, half: bool = False) -> None:
    """A module's tensors as one safetensors file, atomically; ``half`` stores floats as float16."""
    tensors = {}
    for key, value in module.state_dict().items():
        value = value.detach().cpu().contiguous()
        tensors[key] = value.half() if half and value.is_floating_point() else value
    write_atomic(path, save_safetensors(tensors, metadata={**metadata, "format": "mnist-lab/1"}))


def add_record(folder: Path, record: ModelRecord) -> None:
    """Put a record into a folder's manifest, replacing the one for the same file."""
    with _manifest_lock:
        others = [r for r in read_manifest(folder) if r.file != record.file]
        _write_manifest(folder, others + [record])


def save(
    model: nn.Module,
    *,
    name: str,
    arch: str,
    dataset: str,
    summary: dict,
    folder: Path,
    half: bool = False,
) -> ModelRecord:
    """Write ``<folder>/<dataset>/<name>.safetensors`` and its manifest entry, atomically.

    ``summary`` is a TrainResult.summary(); ``half`` stores float tensors as float16 to halve the
    size of shipped files (loading turns them back into float32).
    """
    width = summary.get("config", {}).get("width", 1.0)
    metadata = {"arch": arch, "dataset": dataset, "width": str(width),
                "num_classes": str(len(data.get_spec(dataset).classes))}
    file = f"{dataset}/{safe_name(name)}.safetensors"
    write_weights(model, folder / file, metadata, half=half)
    record = ModelRecord(
        name=name, arch=arch, dataset=dataset, file=file,
        test_accuracy=summary["test_accuracy"], epochs=summary["epochs"], seconds=summary["seconds"],
        device=summary["device"], date=now(),
        code_version=code_version(), config=summary.get("config", {}),
        history=summary.get("history", []), folder=folder,
    )
    add_record(folder, record)
    return record


def read_weights(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a weights file, or CheckpointError saying what is wrong."""
    path = Path(path)
    try:
        with safe_open(path, framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}, f.metadata() or {}
    except FileNotFoundError as error:
        raise CheckpointError(f"{path}: the weights file is missing") from error
    except (SafetensorError, ValueError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error


def fill(module: nn.Module, tensors: dict[str, torch.Tensor], path: Path | str, what: str) -> nn.Module:
    """Load tensors into a freshly built module after checking every name and shape; eval mode."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k} is {tuple(tensors[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape
    ]
    problems = (
        ([f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "")] if missing else [])
        + ([f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else "")] if extra else [])
        + wrong[:3]
    )
    if problems:
        raise CheckpointError(f"{path}: does not match {what!r}: " + "; ".join(problems))
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    return module.eval()


def load(path: Path | str, *, arch: str | None = None) -> nn.Module:
    """Rebuild the classifier stored in a weights file, in eval mode, on the CPU.

    Raises CheckpointError if the file is missing, is not a safetensors file, was written for
    another architecture than ``arch``, or any tensor is missing, extra or of the wrong shape.
    """
    tensors, metadata = read_weights(path)
    stored_arch = metadata.get("arch")
    if stored_arch is None:
        raise CheckpointError(f"{path}: no architecture recorded in the file's metadata")
    if arch is not None and stored_arch != arch:
        raise CheckpointError(f"{path}: holds {stored_arch!r} weights, not {arch!r}")
    try:
        model = get_model(
            stored_arch, num_classes=int(metadata.get("num_classes", 10)),
            width=float(metadata.get("width", 1.0)),
        )
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from error
    return fill(model, tensors, path, stored_arch)


def load_record(record: ModelRecord) -> nn.Module:
    return load(record.path, arch=record.arch)


def find_models(dataset: str | None = None, *, include_runs: bool = True) -> list[ModelRecord]:
    """Shipped models in the zoo's order, then this machine's runs, oldest first; optionally of
    one dataset only."""
    order = {arch: i for i, arch in enumerate(list_models())}
    records = sorted(read_manifest(WEIGHTS_DIR), key=lambda r: (order.get(r.arch, len(order)), r.name))
    if include_runs:
        records += sorted(read_manifest(runs_dir()), key=lambda r: r.date)
    # The manifests also list other kinds of weights (the CGAN's generator): classifiers only here.
    return [r for r in records if r.arch in order and (dataset is None or r.dataset == dataset)]



def save_progress(trainer: Trainer, path: Path) -> None:
    """Checkpoint an unfinished run after an epoch, so that it can resume where it stopped."""
    tensors, extras = trainer.state_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(path, save_safetensors(tensors, metadata={"progress": json.dumps(extras)}))


def load_progress(trainer: Trainer, path: Path) -> None:
    """Continue ``trainer`` from a progress file; CheckpointError if it is unusable."""
    try:
        with safe_open(path, framework="pt") as f:
            extras = json.loads((f.metadata() or {})["progress"])
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        trainer.load_state_dict(tensors, extras)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: cannot resume from it ({error})") from error
