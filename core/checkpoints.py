"""Trained weights on disk: safetensors files (tensors only, nothing is ever unpickled) and a manifest.

    weights/manifest.json              shipped models (in git)
    weights/<dataset>/<arch>.safetensors
    runs/manifest.json                 this machine's runs (outside git, $MNIST_LAB_RUNS)
    runs/<dataset>/<file>.safetensors  a file name of the run's own (its display name is in the manifest)

Every write is atomic (temporary file, fsync, rename), so a crash or a full disk mid-save leaves
the previous file intact, and every read-modify-write of a manifest holds a file lock, so that
processes saving at once lose no entry. Every load checks the metadata, the architecture and each
tensor's name, shape and values, and a bad file raises CheckpointError naming the file and what is
wrong with it, for that model alone. A broken manifest, or one broken entry in it, hides only what
it lists, and says so (``manifest_problems``).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import math
import os
import re
import stat
import subprocess
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Protocol

import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import nn

import core
from core import data
from core.i18n import Message
from core.models import MAX_CLASSES, MAX_WIDTH, MIN_WIDTH, get_model, is_known, list_models
from core.models.cgan import ARCH as GENERATOR_ARCH
from core.training import evaluate

REPO = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = REPO / "weights"
RUNS_ENV = "MNIST_LAB_RUNS"
MANIFEST = "manifest.json"

MANIFEST_LOCK = ".manifest.lock"
MAX_NAME = 80  # characters of a run's display name
_thread_lock = threading.Lock()  # jobs of one server process save concurrently


class CheckpointError(ValueError):
    """A weights file that cannot be used: missing, corrupt, or for another architecture."""


def runs_dir() -> Path:
    """Where runs are saved: $MNIST_LAB_RUNS, else runs/ beside weights/."""
    return Path(os.environ.get(RUNS_ENV) or REPO / "runs")


def cache_dir() -> Path:
    """This machine's measured figures (speed, test-set answers): beside its runs, outside git."""
    return runs_dir() / "cache"


KINDS = ("classifier", "generator")
# What every record of a kind measures, by its real name: a classifier's accuracy in percent on the full
# test split, a generator's label agreement in percent (``core.gan.Scores`` holds the rest of its metrics).
HEADLINE = {"classifier": "test_accuracy", "generator": "agreement"}


@dataclass(frozen=True)  # shared by every reader of a manifest (see load_manifest): replace() makes a new one
class ModelRecord:
    """A trained model's manifest entry; ``file`` is relative to the manifest's folder."""

    name: str  # shown to users: the arch for shipped models, the run name for runs
    arch: str
    dataset: str
    file: str
    epochs: int
    seconds: float  # training wall clock
    device: str
    date: str
    code_version: str
    kind: str = "classifier"  # one of KINDS
    metrics: dict = field(default_factory=dict)  # of the weights in ``file``, by name (see HEADLINE)
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # one entry per epoch
    owner: str = ""  # the student who started the run (the app's token); "" for shipped and command-line models
    folder: Path = field(default=WEIGHTS_DIR, compare=False, repr=False)

    @property
    def path(self) -> Path:
        return self.folder / self.file

    @property
    def test_accuracy(self) -> float:
        """A classifier's accuracy in percent on its full test split."""
        if self.kind != "classifier":
            raise AttributeError(f"{self.name!r} is a {self.kind}: it has no test accuracy, see its metrics")
        return self.metrics["test_accuracy"]

    @property
    def shipped(self) -> bool:
        return self.folder.resolve() == WEIGHTS_DIR.resolve()

    def seen_by(self, owner: str | None) -> bool:
        """Whether ``owner``'s pages show this model: shipped models are everyone's, a run is its owner's;
        ``owner`` None sees every run."""
        return self.shipped or owner is None or self.owner == owner

    @property
    def label(self) -> str:
        """How pages and the command line name the model: a run never passes for a shipped model."""
        return self.name if self.shipped else f"{self.name} (run)"

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


def check_name(name: str) -> str:
    """A run's display name as typed, stripped; ValueError if it cannot be one.

    Any script is welcome (数字, 名前, Zoë); control characters and an empty name are not.
    """
    name = name.strip()
    if not name:
        raise ValueError(Message("names.empty"))
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise ValueError(Message("names.control", name=name))
    if len(name) > MAX_NAME:
        raise ValueError(Message("names.too_long", length=len(name), most=MAX_NAME))
    return name


def file_stem(name: str, fallback: str) -> str:
    """A file name for a display name on every OS: its ASCII letters and digits (accents dropped), else
    ``fallback``. Not unique: the manifest makes it unique when it is saved."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_name).strip(".-")[:60]
    return cleaned or fallback


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file to write that takes the place of ``path`` only when it is whole (fsync, then rename): a
    failure, a full disk, a stop (Ctrl-C, a Streamlit rerun) or a kill leaves the old file (or none)
    and never half a file. A failure raises CheckpointError naming the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"could not make the folder {path.parent}: {error.strerror or error}") from error
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temporary, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise CheckpointError(f"could not write {path}: {error.strerror or error}") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def write_atomic(path: Path, payload: bytes) -> None:
    with atomic_file(path) as file:
        file.write(payload)


@dataclass
class Manifest:
    """One folder's manifest as read: the usable records, the entries that are not (kept as they
    are, so that rewriting the manifest loses none), and what is wrong with each."""

    folder: Path
    records: list[ModelRecord]
    bad_entries: list  # raw JSON of entries that are not valid records
    problems: list[str]
    unreadable: bool = False  # the file as a whole is not a manifest: nothing in it is usable

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    @property
    def files(self) -> set[str]:
        """Every file the manifest lists, in good entries and bad ones."""
        return {r.file for r in self.records} | {e.get("file") for e in self.bad_entries if isinstance(e, dict)}


_REQUIRED = {"name": str, "arch": str, "dataset": str, "file": str, "epochs": int, "seconds": float,
             "device": str, "date": str, "code_version": str, "kind": str, "metrics": dict}
_OPTIONAL = {"config": dict, "history": list, "owner": str}


def _upgraded(entry: dict) -> dict:
    """An entry written before records had a ``kind`` and ``metrics``, as this version writes it.

    Such manifests kept a classifier's accuracy, and a generator's label agreement, in ``test_accuracy``,
    and a generator's scores in ``scores``; a generator was known by its arch alone.
    """
    if "kind" in entry or "metrics" in entry or "test_accuracy" not in entry:
        return entry
    entry = dict(entry)
    accuracy, scores = entry.pop("test_accuracy"), entry.pop("scores", None)
    if entry.get("arch") == GENERATOR_ARCH:
        entry["kind"], entry["metrics"] = "generator", scores if isinstance(scores, dict) else {"agreement": accuracy}
    else:
        entry["kind"], entry["metrics"] = "classifier", {"test_accuracy": accuracy}
    return entry


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _entry_problem(entry: object, folder: Path) -> str | None:
    """Why a manifest entry (upgraded) is not a usable record, or None."""
    if not isinstance(entry, dict):
        return f"an entry is a {type(entry).__name__}, not an object"
    what = f"the entry {entry.get('name')!r}" if isinstance(entry.get("name"), str) else "an entry"
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        return f"{what} has unknown keys {unknown}"
    missing = sorted(set(_REQUIRED) - set(entry))
    if missing:
        return f"{what} lacks {missing}"
    for key, kind in (_REQUIRED | _OPTIONAL).items():
        if key not in entry:
            continue
        value = entry[key]
        if kind is float:
            ok = _is_number(value)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:
            ok = isinstance(value, kind)
        if not ok:
            return f"{what}: {key} is {value!r}, not {'a number' if kind in (int, float) else kind.__name__}"
    if entry["dataset"] not in data.DATASETS:
        return f"{what}: unknown dataset {entry['dataset']!r}"
    if entry["kind"] not in KINDS:
        return f"{what}: kind {entry['kind']!r} is not one of {', '.join(KINDS)}"
    headline = HEADLINE[entry["kind"]]
    if not _is_number(entry["metrics"].get(headline)):  # pages sort and plot by it
        return f"{what}: {headline} is {entry['metrics'].get(headline)!r}, not a number"
    return _file_problem(entry["file"], folder, what)


def _file_problem(file: str, folder: Path, what: str) -> str | None:
    """A record's file must be a .safetensors file inside its folder: no absolute path, no '..', no link out."""
    relative = Path(file)
    if relative.is_absolute() or ".." in relative.parts or relative.suffix != ".safetensors":
        return f"{what}: file {file!r} is not a .safetensors path inside {folder}"
    if not (folder / relative).resolve().is_relative_to(folder.resolve()):
        return f"{what}: file {file!r} points outside {folder}"
    return None


_read: dict[Path, tuple[tuple[int, int, int], Manifest]] = {}  # per manifest: its file's identity when read


def load_manifest(folder: Path) -> Manifest:
    """A folder's manifest; a missing one is empty. Never raises for what the file holds: a broken
    manifest, or a broken entry, is reported in ``problems`` and every other record keeps working.

    The file is parsed again only when it changed: every page rerun of every student asks for the
    manifests, and every save replaces the file (a new inode, a new modification time).
    """
    path = folder / MANIFEST
    try:
        status = path.stat()
        identity = (status.st_ino, status.st_mtime_ns, status.st_size)
    except OSError:
        identity = None  # missing or unreadable: said below
    known = _read.get(path)
    if identity is not None and known is not None and known[0] == identity:
        manifest = known[1]
        return replace(manifest, records=list(manifest.records), bad_entries=list(manifest.bad_entries),
                       problems=list(manifest.problems))
    manifest = _parse_manifest(folder)
    if identity is not None:
        _read[path] = (identity, manifest)
    return manifest


def _parse_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Manifest(folder, [], [], [])
    except (OSError, UnicodeDecodeError) as error:
        return Manifest(folder, [], [], [f"{path} cannot be read ({error})"], unreadable=True)
    try:
        entries = json.loads(text)["models"]
        if not isinstance(entries, list):
            raise TypeError("'models' is not a list")
    except (ValueError, KeyError, TypeError) as error:
        return Manifest(folder, [], [], [
            f"{path} is not a valid manifest ({type(error).__name__}: {error}); the models it lists are hidden. "
            f"Fix the file, or move it aside (the next save then starts a new one; the weights files stay "
            f"in {folder})"], unreadable=True)
    records, bad, problems = [], [], []
    for entry in entries:
        upgraded = _upgraded(entry) if isinstance(entry, dict) else entry
        problem = _entry_problem(upgraded, folder)
        if problem is None:
            records.append(ModelRecord(**upgraded, folder=folder))
        else:
            bad.append(entry)
            problems.append(f"{path}: {problem}; that entry is left out (fix or remove it in the file)")
    return Manifest(folder, records, bad, problems)


def read_manifest(folder: Path) -> list[ModelRecord]:
    """The usable records of one folder (see ``load_manifest`` for what is wrong with the others)."""
    return load_manifest(folder).records


def manifest_problems() -> list[str]:
    """What is wrong with the shipped manifest and this machine's runs manifest, for pages and the CLI."""
    return load_manifest(WEIGHTS_DIR).problems + load_manifest(runs_dir()).problems


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[Manifest]:
    """The folder's manifest, held for a read-modify-write by this thread and process alone.

    A file lock, not only a thread lock: the app server and a command-line ``train`` may save into
    the same runs folder at the same moment.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"could not make the folder {folder}: {error.strerror or error}") from error
    lock = FileLock(folder / MANIFEST_LOCK, timeout=60)
    with _thread_lock:
        try:
            lock.acquire()
        except Timeout as error:
            raise CheckpointError(f"{folder / MANIFEST} stayed locked for a minute by another program") from error
        except OSError as error:
            raise CheckpointError(f"could not lock {folder / MANIFEST_LOCK}: {error.strerror or error}") from error
        try:
            yield _parse_manifest(folder)  # read afresh: a read-modify-write must not trust a cached copy
        finally:
            lock.release()


def _write_manifest(manifest: Manifest, records: list[ModelRecord]) -> None:
    if manifest.unreadable and manifest.path.exists():
        # Nothing in it could be read; keep it beside the new one rather than overwrite it.
        aside = manifest.path.with_name(f"{MANIFEST}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(manifest.path, aside)
    records = sorted(records, key=lambda r: (r.dataset, r.file))
    entries = [r.to_json() for r in records] + manifest.bad_entries
    text = json.dumps({"models": entries}, indent=1, ensure_ascii=False)
    write_atomic(manifest.path, (text + "\n").encode("utf-8"))


def write_weights(module: nn.Module, path: Path, metadata: dict[str, str], *, half: bool = False) -> None:
    """A module's tensors as one safetensors file, atomically; ``half`` stores floats as float16."""
    tensors = {}
    for key, value in module.state_dict().items():
        value = value.detach().cpu().contiguous()
        tensors[key] = value.half() if half and value.is_floating_point() else value
    write_atomic(path, save_safetensors(tensors, metadata={**metadata, "format": "mnist-lab/1"}))


def delete_run(record: ModelRecord, *, owner: str | None) -> None:
    """Remove a run: its manifest entry, then its weights file. Only its owner may (``owner`` None: the
    teacher, or a script); a shipped model is never removed from the app. ValueError otherwise."""
    if record.shipped:
        raise ValueError(f"{record.label} is shipped with the lab: it cannot be deleted")
    if owner is not None and record.owner != owner:
        raise ValueError(f"{record.label} is someone else's run: only the student who trained it can delete it")
    with _locked(record.folder) as manifest:
        _write_manifest(manifest, [r for r in manifest.records if r.file != record.file])
    record.path.unlink(missing_ok=True)


def add_record(folder: Path, record: ModelRecord) -> None:
    """Put a record into a folder's manifest, replacing the one for the same file."""
    with _locked(folder) as manifest:
        others = [r for r in manifest.records if r.file != record.file]
        _write_manifest(manifest, others + [record])


def destination(*, ship: bool) -> Path:
    """Where a trained model is kept: ``weights/`` for a shipped one, this machine's runs folder for a run."""
    return WEIGHTS_DIR if ship else runs_dir()


def save(
    module: nn.Module,
    record: ModelRecord,
    metadata: dict[str, str],
    *,
    ship: bool = False,
    folder: Path | None = None,
    measure: Callable[[nn.Module], dict] | None = None,
) -> ModelRecord:
    """The one way a trained model is kept, classifier or generator: where, in which precision, with
    which figures. The command line, the job queue and ``train --all`` all come here.

    - A run (``ship`` False) goes to this machine's runs folder, in float32, with a file of its own
      and a display name no other run of its dataset has ("name", then "name-2", ...): runs never
      overwrite each other, from one process or several.
    - A shipped model goes to ``weights/``, in float16 (half the size; loading turns it back into
      float32), and replaces the model saved under its file name.
    - The record's metrics are always those of the file as written: ``measure(module)`` measures
      the module after it is rounded to float16, and is required for a shipped model; a run's file
      holds the very weights its training measured.

    ``folder`` puts the model elsewhere (tests, side folders). If the manifest cannot be written, a
    new weights file is removed again, so that no file is left unlisted. Returns the record as saved.
    """
    if ship:
        if measure is None:
            raise ValueError("a shipped model is measured again after its rounding to float16: pass measure")
        module = copy.deepcopy(module).half().float()  # what the float16 file will hold; the caller's stays
    folder = folder or destination(ship=ship)
    record = replace(record, folder=folder, metrics=measure(module) if measure else record.metrics)
    if record.kind not in KINDS or not _is_number(record.metrics.get(HEADLINE[record.kind])):
        raise ValueError(f"a {record.kind}'s record needs its {HEADLINE.get(record.kind, 'metrics')}, "
                         f"got {record.metrics}")
    with _locked(folder) as manifest:
        if not ship:
            record = _claim(manifest, record)
        new_file = not record.path.exists()
        write_weights(module, record.path, metadata, half=ship)
        try:
            others = [r for r in manifest.records if r.file != record.file]
            _write_manifest(manifest, others + [record])
        except (CheckpointError, OSError):
            if new_file:
                record.path.unlink(missing_ok=True)
            raise
    return record


def _claim(manifest: Manifest, record: ModelRecord) -> ModelRecord:
    """The record with a display name that no run of its dataset has, and a file that nothing has yet."""
    names = {r.name for r in manifest.records if r.dataset == record.dataset}
    stem = f"{record.dataset}/{Path(record.file).stem}"
    suffixes = ["", *(f"-{i}" for i in range(2, 10_000))]
    name = next(record.name + s for s in suffixes if record.name + s not in names)
    file = next(f for f in (f"{stem}{s}.safetensors" for s in suffixes)
                if f not in manifest.files and not (manifest.folder / f).exists())
    return replace(record, name=name, file=file)


def save_classifier(
    model: nn.Module,
    *,
    name: str,
    arch: str,
    dataset: str,
    summary: dict,
    ship: bool = False,
    folder: Path | None = None,
    data_root: str | None = None,
    owner: str = "",
) -> ModelRecord:
    """Keep a trained classifier as ``save`` says, as ``<dataset>/<file>.safetensors`` and its entry.

    ``summary`` is a TrainResult.summary(); a shipped model's test accuracy and loss are measured again
    on its float16 weights (on the device that holds it, ``data_root``'s test split).
    """
    name = check_name(name)
    width = summary.get("config", {}).get("width", 1.0)
    metadata = {"arch": arch, "dataset": dataset, "width": str(width),
                "num_classes": str(len(data.get_spec(dataset).classes))}
    measured = {"test_accuracy": summary["test_accuracy"]}
    if "test_loss" in summary:
        measured["test_loss"] = summary["test_loss"]
    record = ModelRecord(
        name=name, arch=arch, dataset=dataset, file=f"{dataset}/{file_stem(name, arch)}.safetensors",
        epochs=summary["epochs"], seconds=summary["seconds"], device=summary["device"], date=now(),
        code_version=code_version(), kind="classifier", metrics=measured, config=summary.get("config", {}),
        history=summary.get("history", []), owner=owner,
    )

    def test_metrics(module: nn.Module) -> dict:
        test = data.load(dataset, train=False, root=data_root, device=next(module.parameters()).device)
        scored = evaluate(module, test, dataset)
        return {"test_accuracy": round(scored.accuracy, 2), "test_loss": round(scored.loss, 4)}

    return save(model, record, metadata, ship=ship, folder=folder, measure=test_metrics if ship else None)


def _stale(temporary: Path) -> bool:
    """A temporary file (``.name.<pid>.<thread>.tmp``) whose writer is gone: its process has ended,
    or it is older than any save takes."""
    try:
        pid = int(temporary.name.split(".")[-3])
        age = time.time() - temporary.stat().st_mtime
    except (ValueError, IndexError, OSError):
        return False
    if age > 3600:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # the process exists (another user's): leave its file alone
        return False
    return False


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files that a save killed midway left in ``folder`` (and its dataset
    folders); returns them. Never touches a file that a running save may still be writing."""
    removed = []
    for temporary in [*folder.glob(".*.tmp"), *folder.glob("*/.*.tmp"), *folder.glob("*/*/.*.tmp")]:
        if _stale(temporary):
            with contextlib.suppress(OSError):
                temporary.unlink()
                removed.append(temporary)
    return removed


def orphans(folder: Path) -> list[Path]:
    """Weights files in ``folder`` that its manifest does not list (a save killed between writing the
    weights and the manifest): ``python -m core clean`` removes them."""
    manifest = load_manifest(folder)
    if manifest.unreadable:
        return []  # every file would look orphaned: the manifest needs fixing first
    files = [p for dataset in data.DATASETS for p in (folder / dataset).glob("*.safetensors")]
    return sorted(p for p in files if p.relative_to(folder).as_posix() not in manifest.files)


def check_writable(folder: Path) -> None:
    """Make sure runs can be saved into ``folder`` before training starts, not after: CheckpointError
    naming the folder and what to do otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}.{threading.get_ident()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise CheckpointError(
            f"cannot save into {folder}: {error.strerror or error}. Make it writable, or point "
            f"{RUNS_ENV} at a folder that is"
        ) from error


def metadata_number(
    metadata: dict[str, str], key: str, *, default: float, low: float, high: float, integer: bool = False,
    path: Path | str = "the weights file",
) -> float:
    """A number from a weights file's metadata, checked against the range the builders accept.

    Metadata is text written by whoever made the file: ``width="inf"`` or ``latent="1000000000"``
    must be refused here, before a model is built (an OverflowError, a negative dimension or a
    150 GB allocation otherwise). Raises CheckpointError naming the file, the key and the range.
    """
    text = metadata.get(key)
    if text is None:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise CheckpointError(f"{path}: metadata {key}={text!r} is not {kind} between {low:g} and {high:g}")
    return value


def read_weights(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a weights file, or CheckpointError saying what is wrong."""
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device would block or never end
            raise CheckpointError(f"{path}: not a regular file")
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
    broken = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:  # such a model answers NaN for every input
        raise CheckpointError(f"{path}: {', '.join(broken[:3])} hold NaN or infinite values")
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
    if not is_known(stored_arch):
        raise CheckpointError(f"{path}: unknown architecture {stored_arch!r}; known: {', '.join(list_models())}")
    num_classes = int(metadata_number(metadata, "num_classes", default=10, low=1, high=MAX_CLASSES, integer=True,
                                      path=path))
    width = metadata_number(metadata, "width", default=1.0, low=MIN_WIDTH, high=MAX_WIDTH, path=path)
    model = get_model(stored_arch, num_classes=num_classes, width=width)
    return fill(model, tensors, path, stored_arch)


def load_record(record: ModelRecord) -> nn.Module:
    problem = _file_problem(record.file, record.folder, f"the entry {record.name!r}")
    if problem:
        raise CheckpointError(problem)
    return load(record.path, arch=record.arch)


def find_models(dataset: str | None = None, *, include_runs: bool = True) -> list[ModelRecord]:
    """Shipped models in the zoo's order, then this machine's runs, oldest first; optionally of
    one dataset only."""
    order = {arch: i for i, arch in enumerate(list_models())}
    records = sorted(read_manifest(WEIGHTS_DIR), key=lambda r: (order.get(r.arch, len(order)), r.name))
    if include_runs:
        records += sorted(read_manifest(runs_dir()), key=lambda r: r.date)
    # The manifests also list generators; and a classifier of an architecture this version lacks (or a built
    # network whose spec this machine does not keep) cannot load.
    return [r for r in records if r.kind == "classifier" and (r.arch in order or is_known(r.arch))
            and dataset in (None, r.dataset)]



class Resumable(Protocol):
    """A run that can stop after an epoch and go on later: the classifiers' Trainer and the GanTrainer."""

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]: ...

    def load_state_dict(self, tensors: dict[str, torch.Tensor], extras: dict) -> None: ...


def save_progress(trainer: Resumable, path: Path) -> None:
    """Checkpoint an unfinished run after an epoch, so that it can resume where it stopped."""
    tensors, extras = trainer.state_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(path, save_safetensors(tensors, metadata={"progress": json.dumps(extras)}))


def load_progress(trainer: Resumable, path: Path) -> None:
    """Continue ``trainer`` from a progress file; CheckpointError if it is unusable."""
    try:
        with safe_open(path, framework="pt") as f:
            extras = json.loads((f.metadata() or {})["progress"])
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        trainer.load_state_dict(tensors, extras)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: cannot resume from it ({error})") from error
