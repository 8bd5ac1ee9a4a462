"""How fast things run here: the training pipeline, drawing to answers, one model's latency and throughput.

Every figure names the machine it was measured on (``describe_machine``); ``python -m core bench``
prints them.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from core import data, preprocess
from core.i18n import Message
from core.models import evaluating, get_model
from core.predict import PAGE_THREADS, Ensemble, torch_threads
from core.training import TrainConfig, Trainer, autocast, describe_device, resolve_device, use_channels_last


def describe_machine(device: torch.device | str | None = None, *, threads: int | None = None) -> str:
    """Where a figure was measured: the device (with ``threads`` on a CPU), the CPU and the torch version."""
    cpu = platform.processor() or platform.machine()
    return Message("devices.machine", device=describe_device(device, threads=threads), cpu=cpu, torch=torch.__version__)


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
            schedule="constant", augment=augment, val_split=0.0, patience=0, limit=batches * batch_size,
            log_every=batches,
        )
        return Trainer(config, device=device, data_root=data_root)

    def trainer_round(run: Trainer, epoch: int) -> float:
        _sync(device)
        start = time.perf_counter()
        run.train_epoch(epoch)
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
    """Milliseconds from a 280x280 drawing to every shipped model's answer: the Draw page's work, with
    the torch threads a page has (``PAGE_THREADS``).

    The drawing is a test digit painted at canvas size; preprocessing and all models are timed
    together, and the median of ``repeats`` runs is reported (after one warm-up).
    """
    ensemble = Ensemble.for_dataset(dataset, include_runs=False)
    if not len(ensemble):
        return {"dataset": dataset, "models": 0}
    digit = data.load(dataset, train=False, root=data_root, limit=1).images[0].numpy()
    grey = np.kron(digit, np.ones((10, 10), dtype=np.uint8))  # 28 -> 280 pixels, like a canvas
    canvas = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    timings = []
    with torch_threads(PAGE_THREADS):
        for _ in range(repeats + 1):
            start = time.perf_counter()
            ensemble.predict(preprocess.prepare(canvas, dataset=dataset).tensor(dataset))
            timings.append(1000 * (time.perf_counter() - start))
    return {"dataset": dataset, "models": len(ensemble), "threads": PAGE_THREADS, "repeats": repeats,
            "median_ms": round(statistics.median(timings[1:]), 2)}


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
    if batch_size < 1 or repeats < 1:
        raise ValueError(f"batch_size and repeats must be at least 1, got {batch_size} and {repeats}")
    device = next(model.parameters()).device
    if use_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)

    def seconds(n: int, *, warmup: int, runs: int) -> float:
        x = torch.randn(n, *image_size, generator=generator).to(device)
        if use_channels_last(device):
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            return _median_seconds(model, x, warmup=warmup, repeats=runs)

    with evaluating(model):
        latency = seconds(1, warmup=3, runs=10 * repeats)
        batch = seconds(batch_size, warmup=1, runs=repeats)
    return Speed(round(1000 * latency, 3), round(batch_size / batch, 1), batch_size, repeats)


def speed_devices() -> list[torch.device]:
    """Where the zoo is timed: the CPU, and the GPU when there is one."""
    best = resolve_device()
    return [torch.device("cpu")] + ([best] if best.type != "cpu" else [])
