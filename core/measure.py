"""Parameters, multiply-accumulates, latency and throughput of any nn.Module, and the zoo side by side.

Speed figures and test-set predictions are slow to make on a CPU, so they are cached on this machine
beside its runs (``cache_dir()``, outside git): speed per machine and architecture, predictions per
weights file.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core import checkpoints, data
from core.checkpoints import ModelRecord


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 1, 28, 28)) -> int:
    """Multiply-accumulates for one forward pass, from torch's own flop counter (1 MAC = 2 flops)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(input_size, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2 // input_size[0]


@cache
def architecture_size(name: str, *, num_classes: int = 10, width: float = 1.0) -> tuple[int, int]:
    """(parameters, MACs per 28x28 image) of a registry architecture at its classroom scale."""
    from core.models import get_model

    model = get_model(name, num_classes=num_classes, width=width)
    return count_params(model), count_macs(model)


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[true class, predicted class] over a split."""
    pairs = labels.long() * num_classes + predicted.long()
    return torch.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def describe_machine(device: torch.device | str | None = None) -> str:
    """Where a figure was measured: the device, the CPU and the torch version."""
    import platform

    from core.training import describe_device

    cpu = platform.processor() or platform.machine()
    return f"{describe_device(device)}; {cpu}; torch {torch.__version__}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pipeline_benchmark(
    *,
    batches: int = 300,
    rounds: int = 5,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    data_root: str | None = None,
    arch: str = "lenet5-relu",
) -> dict:
    """Training images/s of the tutorial pipeline against our trainer, same model and optimizer.

    The tutorial pipeline is torchvision's dataset with per-sample ToTensor + Normalize through a
    DataLoader (pytorch/examples mnist); ours is the Trainer's own loop over tensors on the device.
    After one warm-up round, the pipelines take turns for ``rounds`` rounds of ``batches`` batches,
    so that a busy machine slows both alike; the medians are reported.
    """
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from core.models import get_model
    from core.training import TrainConfig, Trainer, resolve_device

    device = resolve_device(device)
    spec = data.get_spec("mnist")
    data.load("mnist", train=True, root=data_root)  # a missing dataset fails here, clearly
    tutorial_set = datasets.MNIST(
        data.data_root(data_root), train=True,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((spec.mean,), (spec.std,))]),
    )
    loader = DataLoader(tutorial_set, batch_size=batch_size, shuffle=True)

    def endless():
        while True:
            yield from loader

    tutorial_batches = endless()
    torch.manual_seed(0)
    model = get_model(arch).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def tutorial_round() -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(batches):
            images, labels = next(tutorial_batches)
            images, labels = images.to(device), labels.to(device)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        return batches * batch_size / (time.perf_counter() - start)

    def trainer(augment: bool) -> Trainer:
        config = TrainConfig(
            arch=arch, epochs=rounds + 1, batch_size=batch_size, lr=1e-3, optimizer="adamw",
            schedule="constant", augment=augment, val_split=0.0, limit=batches * batch_size, log_every=batches,
        )
        return Trainer(config, device=device, data_root=data_root)

    def trainer_round(run: Trainer, epoch: int) -> float:
        _sync(device)
        start = time.perf_counter()
        run.train_epoch(epoch, stop=lambda: False)
        _sync(device)
        return batches * batch_size / (time.perf_counter() - start)

    plain, augmented = trainer(augment=False), trainer(augment=True)
    speeds: dict[str, list[float]] = {"tutorial": [], "plain": [], "augmented": []}
    for epoch in range(1, rounds + 2):
        measured = {"tutorial": tutorial_round(), "plain": trainer_round(plain, epoch),
                    "augmented": trainer_round(augmented, epoch)}
        if epoch > 1:  # the first round warms up caches and allocators
            for key, value in measured.items():
                speeds[key].append(value)
    tutorial, ours, ours_augmented = (statistics.median(speeds[k]) for k in ("tutorial", "plain", "augmented"))
    return {
        "arch": arch,
        "batch_size": batch_size,
        "batches": batches,
        "rounds": rounds,
        "tutorial_images_per_s": round(tutorial, 1),
        "trainer_images_per_s": round(ours, 1),
        "trainer_augmented_images_per_s": round(ours_augmented, 1),
        "speedup": round(ours / tutorial, 2),
    }


def draw_latency(dataset: str = "mnist", *, repeats: int = 50, data_root: str | None = None) -> dict:
    """Milliseconds from a 280x280 drawing to every shipped model's answer: the Draw page's work.

    The drawing is a test digit painted at canvas size; preprocessing and all models are timed
    together, and the median of ``repeats`` runs is reported (after one warm-up).
    """
    import numpy as np

    from core import preprocess
    from core.predict import Ensemble

    ensemble = Ensemble.for_dataset(dataset, include_runs=False)
    if not len(ensemble):
        return {"dataset": dataset, "models": 0}
    digit = data.load(dataset, train=False, root=data_root, limit=1).images[0].numpy()
    grey = np.kron(digit, np.ones((10, 10), dtype=np.uint8))  # 28 -> 280 pixels, like a canvas
    canvas = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    timings = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        ensemble.predict(preprocess.prepare(canvas).tensor(dataset))
        timings.append(1000 * (time.perf_counter() - start))
    return {"dataset": dataset, "models": len(ensemble), "repeats": repeats,
            "median_ms": round(statistics.median(timings[1:]), 2)}


# --- the zoo side by side -------------------------------------------------------------------------

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what runs now)


def _no_progress(done: int, total: int, what: str) -> None: ...


@dataclass(frozen=True)
class ReferenceFigure:
    family: str
    arch: str  # our architecture of the same family
    seconds: float  # training time
    accuracy: float  # percent, on the test split


# The course's lab report trained the same families at full size, for context beside our figures.
LAB_REPORT_SETTING = "MNIST at 224x224, NVIDIA A100, 5 epochs"
LAB_REPORT = (
    ReferenceFigure("LeNet", "lenet5", 40.72, 97.48),
    ReferenceFigure("AlexNet", "alexnet", 64.39, 99.22),
    ReferenceFigure("VGG-11", "vgg11", 321.26, 99.23),
    ReferenceFigure("VGG-19", "vgg19", 661.17, 99.14),
    ReferenceFigure("ResNet", "resnet18", 139.1, 99.37),
    ReferenceFigure("MobileNet", "mobilenet", 176.96, 98.81),
    ReferenceFigure("GoogLeNet", "googlenet", 193.44, 99.07),
)


@dataclass(frozen=True)
class Speed:
    latency_ms: float  # one image, median of the timed runs
    images_per_s: float  # at ``batch_size``, from the median of its timed runs
    batch_size: int
    repeats: int  # timed runs at ``batch_size``; single images get ten times as many


def _median_seconds(model: nn.Module, x: torch.Tensor, *, warmup: int, repeats: int) -> float:
    for _ in range(warmup):  # allocators, caches, cuDNN's choice of algorithms
        model(x)
    timings = []
    for _ in range(repeats):
        _sync(x.device)
        start = time.perf_counter()
        model(x)
        _sync(x.device)  # CUDA calls return before their kernels finish
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


@torch.inference_mode()
def measure_speed(
    model: nn.Module, *, batch_size: int = 256, repeats: int = 3, image_size: tuple[int, int, int] = (1, 28, 28)
) -> Speed:
    """Latency for one image and throughput at ``batch_size``, on the device that holds the model.

    The model runs as ``training.evaluate`` runs it: eval mode, channels-last (it is converted in
    place), bf16 autocast on CUDA. After a warm-up, the medians of ``repeats`` runs at ``batch_size``
    and of ten times as many single images are reported: a busy machine slows some runs, and
    medians ignore them.
    """
    from core.training import autocast, use_channels_last

    if batch_size < 1 or repeats < 1:
        raise ValueError(f"batch_size and repeats must be at least 1, got {batch_size} and {repeats}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    if use_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)

    def seconds(n: int, *, warmup: int, runs: int) -> float:
        x = torch.randn(n, *image_size, generator=generator).to(device)
        if use_channels_last(device):
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            return _median_seconds(model, x, warmup=warmup, repeats=runs)

    latency = seconds(1, warmup=3, runs=10 * repeats)
    batch = seconds(batch_size, warmup=1, runs=repeats)
    model.train(was_training)
    return Speed(round(1000 * latency, 3), round(batch_size / batch, 1), batch_size, repeats)


def speed_devices() -> list[torch.device]:
    """Where the zoo is timed: the CPU, and the GPU when there is one."""
    from core.training import resolve_device

    best = resolve_device()
    return [torch.device("cpu")] + ([best] if best.type != "cpu" else [])


def cache_dir() -> Path:
    """This machine's speed figures and predictions: beside its runs, outside git."""
    return checkpoints.runs_dir() / "cache"


_SPEED_FILE = "speed.json"
_SPEED_FORMAT = "mnist-lab-speed/1"
_speed_lock = threading.Lock()  # the sessions of one server may measure at the same time

Architecture = tuple[str, int, float]  # (arch, num_classes, width): what speed depends on


def _read_speeds() -> dict[str, dict]:
    """{machine: {architecture: figures}}; a missing or unreadable cache is an empty one."""
    try:
        document = json.loads((cache_dir() / _SPEED_FILE).read_text(encoding="utf-8"))
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
    batch_size: int = 256,
    repeats: int = 3,
    progress: Progress | None = None,
) -> dict[Architecture, dict[str, Speed]]:
    """Speed of each architecture per device type ("cpu", "cuda"...), from this machine's cache.

    Speed belongs to the architecture, not to its trained weights, so it is timed on a freshly
    built model and shared by every trained model of that architecture. Figures missing from the
    cache (all of them with ``refresh``) are measured now and saved under ``describe_machine``:
    another machine, another torch or another thread count measures anew.
    """
    from core.models import get_model

    devices = speed_devices() if devices is None else devices
    progress = progress or _no_progress
    machines = {device.type: describe_machine(device) for device in devices}
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
    for done, (architecture, device) in enumerate(todo):
        arch, num_classes, width = architecture
        progress(done, len(todo), f"timing {arch} on the {'CPU' if device.type == 'cpu' else 'GPU'}")
        model = get_model(arch, num_classes=num_classes, width=width).to(device)
        speeds[architecture][device.type] = measure_speed(model, batch_size=batch_size, repeats=repeats)
    if todo:
        progress(len(todo), len(todo), "done")
        with _speed_lock:  # read again: another session may have saved figures meanwhile
            machines_now = _read_speeds()
            for architecture, device in todo:
                figures = asdict(speeds[architecture][device.type])
                machines_now.setdefault(machines[device.type], {})[_speed_key(architecture)] = figures
            text = json.dumps({"format": _SPEED_FORMAT, "machines": machines_now}, indent=1)
            checkpoints.write_atomic(cache_dir() / _SPEED_FILE, (text + "\n").encode("utf-8"))
    return speeds


def architecture_of(record: ModelRecord) -> Architecture:
    return record.arch, len(data.get_spec(record.dataset).classes), float(record.config.get("width", 1.0))


@cache
def _weights_megabytes(arch: str, num_classes: int, width: float) -> float:
    from core.models import get_model

    model = get_model(arch, num_classes=num_classes, width=width)
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6


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
    batch_size: int = 256,
    repeats: int = 3,
    progress: Progress | None = None,
) -> list[ZooRow]:
    """Size, accuracy, training cost and speed of every trained model (default: all found here).

    Speed is measured as ``architecture_speeds`` says, at most once per architecture.
    """
    records = checkpoints.find_models() if records is None else records
    speeds = architecture_speeds([architecture_of(r) for r in records], devices=devices, refresh=refresh,
                                 batch_size=batch_size, repeats=repeats, progress=progress)
    rows = []
    for record in records:
        architecture = architecture_of(record)
        _, num_classes, width = architecture
        params, macs = architecture_size(record.arch, num_classes=num_classes, width=width)
        row = ZooRow(
            name=record.name, arch=record.arch, dataset=record.dataset, shipped=record.shipped,
            params=params, macs=macs, weights_mb=round(_weights_megabytes(*architecture), 2),
            test_accuracy=record.test_accuracy, train_seconds=record.seconds, epochs=record.epochs,
            train_device=record.device,
        )
        for device_type, speed in speeds[architecture].items():
            prefix = "cpu" if device_type == "cpu" else "gpu"
            setattr(row, f"{prefix}_latency_ms", speed.latency_ms)
            setattr(row, f"{prefix}_images_per_s", speed.images_per_s)
        rows.append(row)
    return rows


# --- what the models get right and wrong on the test split ----------------------------------------

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


def _predictions_file(record: ModelRecord) -> Path:
    return cache_dir() / "predictions" / f"{weights_digest(record.path)}.safetensors"


def _cached_predictions(record: ModelRecord, size: int) -> Predictions | None:
    try:
        with safe_open(_predictions_file(record), framework="pt") as f:
            predicted, confidence = f.get_tensor("predicted").long(), f.get_tensor("confidence")
    except (OSError, SafetensorError, KeyError, ValueError):
        return None
    return Predictions(predicted, confidence) if len(predicted) == len(confidence) == size else None


@torch.inference_mode()
def model_predictions(
    record: ModelRecord, *, data_root: str | None = None, device: torch.device | str | None = None
) -> Predictions:
    """A model's answers on its test split: from this machine's cache, else computed and cached.

    The cache is keyed by the weights file's content, so a retrained model is predicted anew.
    Computed in float32 on ``device`` (default: the best available). Raises CheckpointError for a
    missing, corrupt or mismatched weights file.
    """
    from core.training import resolve_device, use_channels_last

    test = data.load(record.dataset, train=False, root=data_root)
    cached = _cached_predictions(record, len(test))
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
    tensors = {"predicted": result.predicted.to(torch.uint8), "confidence": result.confidence}
    metadata = {"arch": record.arch, "dataset": record.dataset, "weights": str(record.path)}
    checkpoints.write_atomic(_predictions_file(record), save_safetensors(tensors, metadata=metadata))
    return result


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
            cached = _cached_predictions(record, len(data.load(record.dataset, train=False, root=data_root)))
        except checkpoints.CheckpointError as error:
            problems[record.name] = str(error)
            continue
        if cached is None:
            todo.append(record)
        else:
            answers[record.path] = cached
    for done, record in enumerate(todo):
        progress(done, len(todo), f"{record.name}: answering the test set")
        try:
            answers[record.path] = model_predictions(record, data_root=data_root, device=device)
        except checkpoints.CheckpointError as error:
            problems[record.name] = str(error)
    if todo:
        progress(len(todo), len(todo), "done")
    return {r.path: answers[r.path] for r in records if r.path in answers}, problems


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


# --- inside one architecture ----------------------------------------------------------------------

@dataclass
class Layer:
    name: str  # its path in the model, e.g. "features.0"
    kind: str  # its class, e.g. "Conv2d"
    output_shape: tuple[int, ...] | None  # for one image; None if it does not run at inference
    params: int  # its own and its children's
    macs: int  # per image, its own and its children's


@torch.no_grad()
def layer_summary(
    model: nn.Module, *, depth: int | None = None, input_size: tuple[int, ...] = (1, 1, 28, 28)
) -> list[Layer]:
    """The modules ``depth`` levels down (leaves higher up included; all the leaves if None), in order.

    Output shapes come from forward hooks, MACs from torch's flop counter, which charges each
    operation to every module it runs in. Modules that run only in training (GoogLeNet's auxiliary
    heads) have no output shape.
    """
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")

    def chosen(name: str, module: nn.Module) -> bool:
        level, leaf = name.count(".") + 1, not any(True for _ in module.children())
        return (leaf and (depth is None or level <= depth)) or level == depth

    modules = [(name, module) for name, module in model.named_modules() if name and chosen(name, module)]
    shapes: dict[str, tuple[int, ...]] = {}

    def record_shape(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor | tuple) -> None:
            tensor = output[0] if isinstance(output, tuple) else output
            shapes[name] = tuple(tensor.shape[1:])

        return hook

    handles = [module.register_forward_hook(record_shape(name)) for name, module in modules]
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(torch.zeros(input_size, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    # The counter names modules by their path under the root's class name: "ResNet.features.0".
    flops = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    return [
        Layer(name, type(module).__name__, shapes.get(name), count_params(module),
              flops.get(f"{root}.{name}", 0) // 2 // input_size[0])
        for name, module in modules
    ]
