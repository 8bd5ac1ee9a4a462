"""Parameters, multiply-accumulates, latency and throughput of any nn.Module."""

from __future__ import annotations

import statistics
import time
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


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

    from core import data
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

    from core import data, preprocess
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
