"""The zoo side by side: every trained model's size, accuracy, training cost and speed in one table.

Speed belongs to an architecture, not to its weights, and is slow to measure on a CPU: it is cached
on this machine beside its runs (``checkpoints.cache_dir()``, outside git), per machine and architecture.
It is measured with the torch threads a page answers with (``predict.PAGE_THREADS``), whoever asks: the
latency is what the Draw page sees, and every caller reads the same figures.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from core import checkpoints, data
from core.bench import Speed, describe_machine, measure_speed, speed_devices
from core.checkpoints import ModelRecord
from core.cost import architecture_size, weights_megabytes
from core.i18n import Message
from core.metrics import Predictions, cached_predictions, model_predictions
from core.models import get_model
from core.predict import PAGE_THREADS, torch_threads

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what runs now)


def _no_progress(done: int, total: int, what: str) -> None: ...


@dataclass(frozen=True)
class ReferenceFigure:
    family: str
    arch: str  # our architecture of the same family
    seconds: float  # training time
    accuracy: float  # percent, on the test split


# The course's lab report trained the same families at full size, for context beside our figures.
LAB_REPORT_SETTING = Message("report.setting")  # "MNIST at 224x224, NVIDIA A100, 5 epochs"
LAB_REPORT = (
    ReferenceFigure("LeNet", "lenet5", 40.72, 97.48),
    ReferenceFigure("AlexNet", "alexnet", 64.39, 99.22),
    ReferenceFigure("VGG-11", "vgg11", 321.26, 99.23),
    ReferenceFigure("VGG-19", "vgg19", 661.17, 99.14),
    ReferenceFigure("ResNet", "resnet18", 139.1, 99.37),
    ReferenceFigure("MobileNet", "mobilenet", 176.96, 98.81),
    ReferenceFigure("GoogLeNet", "googlenet", 193.44, 99.07),
)


_SPEED_FILE = "speed.json"
_SPEED_FORMAT = "mnist-lab-speed/1"
_speed_lock = threading.Lock()  # the sessions of one server may measure at the same time

Architecture = tuple[str, int, float]  # (arch, num_classes, width): what speed depends on


def _read_speeds() -> dict[str, dict]:
    """{machine: {architecture: figures}}; a missing or unreadable cache is an empty one."""
    try:
        document = json.loads((checkpoints.cache_dir() / _SPEED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict) or document.get("format") != _SPEED_FORMAT:
        return {}
    return document.get("machines", {})


def _speed_key(architecture: Architecture) -> str:
    arch, num_classes, width = architecture
    return f"{arch}/classes={num_classes}/width={width:g}"


def architecture_speeds(
    architectures: list[Architecture],
    *,
    devices: list[torch.device] | None = None,
    refresh: bool = False,
    measure: bool = True,
    batch_size: int = 256,
    repeats: int = 3,
    progress: Progress | None = None,
) -> dict[Architecture, dict[str, Speed]]:
    """Speed of each architecture per device type ("cpu", "cuda"...), from this machine's cache.

    Speed belongs to the architecture, not to its trained weights, so it is timed on a freshly
    built model and shared by every trained model of that architecture. Figures missing from the
    cache (all of them with ``refresh``) are measured now and saved under ``timing_machine``: another
    machine or another torch measures anew. Without ``measure`` they are left out: what a page shows
    while a TimingJob measures them.
    """
    devices = speed_devices() if devices is None else devices
    progress = progress or _no_progress
    machines = {device.type: timing_machine(device) for device in devices}
    cached = _read_speeds()
    speeds: dict[Architecture, dict[str, Speed]] = {}
    todo = []
    for architecture in dict.fromkeys(architectures):
        speeds[architecture] = {}
        for device in devices:
            try:
                speed = None if refresh else Speed(**cached.get(machines[device.type], {})[_speed_key(architecture)])
            except (KeyError, TypeError):  # not timed here yet, or by another version
                speed = None
            if speed is None or speed.batch_size != batch_size:
                todo.append((architecture, device))
            else:
                speeds[architecture][device.type] = speed
    if not measure:
        return speeds
    for done, (architecture, device) in enumerate(todo):
        arch, num_classes, width = architecture
        on_the = "phases.timing_cpu" if device.type == "cpu" else "phases.timing_gpu"
        progress(done, len(todo), Message(on_the, arch=arch))
        model = get_model(arch, num_classes=num_classes, width=width).to(device)
        with torch_threads(PAGE_THREADS):
            speeds[architecture][device.type] = measure_speed(model, batch_size=batch_size, repeats=repeats)
    if todo:
        progress(len(todo), len(todo), Message("phases.timing_done"))
        with _speed_lock:  # read again: another session may have saved figures meanwhile
            machines_now = _read_speeds()
            for architecture, device in todo:
                figures = asdict(speeds[architecture][device.type])
                machines_now.setdefault(machines[device.type], {})[_speed_key(architecture)] = figures
            text = json.dumps({"format": _SPEED_FORMAT, "machines": machines_now}, indent=1)
            checkpoints.write_atomic(checkpoints.cache_dir() / _SPEED_FILE, (text + "\n").encode("utf-8"))
    return speeds


def timing_machine(device: torch.device) -> str:
    """Where the zoo's speeds were measured: ``describe_machine`` with the pages' threads."""
    return describe_machine(device, threads=PAGE_THREADS)


@dataclass(frozen=True)
class TimingJob:
    """Timing architectures on this machine as a queued job (the Compare page's speed columns): it has
    the device to itself, as a training run does, so the figures are not those of a busy machine, and
    it costs the pages nothing."""

    architectures: tuple[Architecture, ...]
    refresh: bool = False  # time again what is cached
    log_every: int = 1  # as the trainers' configs have; every architecture timed is reported

    @property
    def epochs(self) -> int:  # what the queue's progress and estimates read: one pass over the list
        return 1

    def validate(self) -> None:
        if not self.architectures:
            raise ValueError("nothing to time: the list of architectures is empty")
        for arch, num_classes, width in self.architectures:
            get_model(arch, num_classes=num_classes, width=width)  # an unknown one is refused now

    def run(self, progress: Progress) -> None:
        """Time them, and cache the figures for every page and command."""
        # tuples: a job read back from the database has lists
        architecture_speeds([tuple(a) for a in self.architectures], refresh=self.refresh, progress=progress)


def architecture_of(record: ModelRecord) -> Architecture:
    return record.arch, len(data.get_spec(record.dataset).classes), float(record.config.get("width", 1.0))


@dataclass
class ZooRow:
    """One trained model in the comparison table; ``asdict`` makes it JSON."""

    name: str
    arch: str
    dataset: str
    shipped: bool
    params: int
    macs: int  # per image
    weights_mb: float  # as float32 tensors in memory (shipped files store float16: half of it)
    test_accuracy: float  # percent, from the manifest
    train_seconds: float
    epochs: int
    train_device: str
    cpu_latency_ms: float | None = None
    cpu_images_per_s: float | None = None
    gpu_latency_ms: float | None = None
    gpu_images_per_s: float | None = None


def zoo_table(
    records: list[ModelRecord] | None = None,
    *,
    devices: list[torch.device] | None = None,
    refresh: bool = False,
    measure: bool = True,
    batch_size: int = 256,
    repeats: int = 3,
    progress: Progress | None = None,
) -> list[ZooRow]:
    """Size, accuracy, training cost and speed of every trained model (default: all found here).

    Speed is measured as ``architecture_speeds`` says, at most once per architecture; without
    ``measure``, what is not cached yet is None.
    """
    records = checkpoints.find_models() if records is None else records
    speeds = architecture_speeds([architecture_of(r) for r in records], devices=devices, refresh=refresh,
                                 measure=measure, batch_size=batch_size, repeats=repeats, progress=progress)
    rows = []
    for record in records:
        architecture = architecture_of(record)
        _, num_classes, width = architecture
        params, macs = architecture_size(record.arch, num_classes=num_classes, width=width)
        row = ZooRow(
            name=record.name, arch=record.arch, dataset=record.dataset, shipped=record.shipped,
            params=params, macs=macs, weights_mb=round(weights_megabytes(*architecture), 2),
            test_accuracy=record.test_accuracy, train_seconds=record.seconds, epochs=record.epochs,
            train_device=record.device,
        )
        for device_type, speed in speeds[architecture].items():
            prefix = "cpu" if device_type == "cpu" else "gpu"
            setattr(row, f"{prefix}_latency_ms", speed.latency_ms)
            setattr(row, f"{prefix}_images_per_s", speed.images_per_s)
        rows.append(row)
    return rows


def zoo_predictions(
    records: list[ModelRecord],
    *,
    data_root: str | None = None,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> tuple[dict[Path, Predictions], dict[str, str]]:
    """Every model's test-split answers, keyed by weights file, and the problems of those left out.

    ``progress`` hears about the models that are not cached yet: the slow part.
    """
    progress = progress or _no_progress
    answers: dict[Path, Predictions] = {}
    problems: dict[str, str] = {}
    todo = []
    for record in records:
        try:
            cached = cached_predictions(record, len(data.load(record.dataset, train=False, root=data_root)))
        except checkpoints.CheckpointError as error:
            problems[record.name] = str(error)
            continue
        if cached is None:
            todo.append(record)
        else:
            answers[record.path] = cached
    for done, record in enumerate(todo):
        progress(done, len(todo), Message("phases.answering", name=record.name))
        try:
            answers[record.path] = model_predictions(record, data_root=data_root, device=device)
        except checkpoints.CheckpointError as error:
            problems[record.name] = str(error)
    if todo:
        progress(len(todo), len(todo), Message("phases.timing_done"))
    return {r.path: answers[r.path] for r in records if r.path in answers}, problems
