"""The lab report's table at paper scale: the seven classics at the papers' own sizes and inputs, measured here.

The zoo's networks are the classics scaled to 28x28 digits and a classroom budget. The lab report this lab
grew out of (``zoo.LAB_REPORT``) instead upsampled MNIST to 224x224 and trained the published networks, 5
epochs at batch 64. ``train --resolution 224`` (32 for LeNet-5, its paper's input) does the same, and
``bench --paper`` runs the seven in turn:

    python -m core bench --paper                  # on a GPU server: the seven, 5 epochs, batch 64
    python -m core train --arch vgg19 --resolution 224 --epochs 5 --batch-size 64

The networks are the papers' own, at the papers' widths: torchvision's AlexNet, VGG-11, VGG-19 (without batch
norm, as published), ResNet-18 and GoogLeNet (with its two auxiliary heads), and here LeNet-5 (32x32, tanh,
average pooling) and MobileNet v1 (1.0, 224), which torchvision does not have. A digit is upsampled on the
device, batch by batch, and its grey repeated into the three channels these networks take: the dataset stays
28x28 in memory. A paper-scale run is measured, not kept: its figures (time, speed, accuracy) go into
``runs/paper-scale.json``, which Compare shows beside the lab report's and the zoo's, while its weights (228 MB
for AlexNet, 560 MB for VGG-19) would be far too slow for the pages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from core import data
from core.cost import count_params

if TYPE_CHECKING:
    from core.training import TrainResult
    from core.zoo import ReferenceFigure

ZOO = 28  # the zoo's input side
RESOLUTION = {"lenet5": 32, "alexnet": 224, "vgg11": 224, "vgg19": 224, "resnet18": 224, "mobilenet": 224,
              "googlenet": 224}  # the papers' inputs; the seven of the lab report
FILE = "paper-scale.json"


def lenet5(num_classes: int = 10) -> nn.Module:
    """LeCun et al. 1998 on its 32x32 input: C1-S2-C3-S4-C5-F6, tanh, average pooling."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),  # 6 x 28 x 28, 6 x 14 x 14
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),  # 16 x 10 x 10, 16 x 5 x 5
        nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(),  # 120
        nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes))


def mobilenet(num_classes: int = 10) -> nn.Module:
    """Howard et al. 2017, 1.0 MobileNet-224: a 3x3 stem of stride 2, thirteen depthwise separable blocks."""
    def block(inputs: int, outputs: int, stride: int, groups: int = 1, kernel: int = 3) -> list[nn.Module]:
        return [nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups, bias=False),
                nn.BatchNorm2d(outputs), nn.ReLU(inplace=True)]

    layers, channels = block(3, 32, 2), 32
    for outputs, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2),
                            (1024, 1)]:
        layers += block(channels, channels, stride, groups=channels) + block(channels, outputs, 1, kernel=1)
        channels = outputs
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, num_classes))


_BUILDERS: dict[str, Callable[[int], nn.Module]] = {
    "lenet5": lenet5,
    "alexnet": lambda n: torchvision.models.alexnet(num_classes=n),
    "vgg11": lambda n: torchvision.models.vgg11(num_classes=n),
    "vgg19": lambda n: torchvision.models.vgg19(num_classes=n),
    "resnet18": lambda n: torchvision.models.resnet18(num_classes=n),
    "mobilenet": mobilenet,
    "googlenet": lambda n: torchvision.models.googlenet(num_classes=n, aux_logits=True, init_weights=True),
}


class PaperScale(nn.Module):
    """A paper's network on the lab's 28x28 digits: upsampled to its input, grey repeated into its channels."""

    def __init__(self, network: nn.Module, resolution: int, channels: int) -> None:
        super().__init__()
        self.network, self.resolution, self.channels = network, resolution, channels

    def forward(self, x: Tensor):
        x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        return self.network(x.expand(-1, self.channels, -1, -1))


def check(arch: str, resolution: int) -> None:
    """ValueError unless ``resolution`` is the zoo's 28 or ``arch``'s paper input."""
    if resolution != ZOO and RESOLUTION.get(arch) != resolution:
        paper = f"{RESOLUTION[arch]} (its paper's input) or " if arch in RESOLUTION else ""
        raise ValueError(f"resolution {resolution}: {arch} trains at {paper}{ZOO} (the lab's digits); the papers' "
                         f"sizes are {', '.join(f'{a} {r}' for a, r in RESOLUTION.items())}")


def build(arch: str, *, num_classes: int = 10, generator: torch.Generator | None = None) -> PaperScale:
    """The paper's network of ``arch`` at its paper's input. Its initial weights come from ``generator``'s seed
    (torchvision draws from the global generator, which is forked here, not touched)."""
    if arch not in RESOLUTION:
        raise ValueError(f"{arch} has no paper-scale network; the lab report's are {', '.join(RESOLUTION)}")
    seed = int(torch.randint(2**62, (1,), generator=generator)) if generator is not None else None
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        network = _BUILDERS[arch](num_classes)
    return PaperScale(network, RESOLUTION[arch], 1 if arch == "lenet5" else 3)


def row(result: TrainResult, *, ranks: int = 1) -> dict:
    """A paper-scale run's figures, as the report keeps them."""
    config = result.config
    return {"arch": config.arch, "dataset": config.dataset, "resolution": config.resolution,
            "params": count_params(result.model), "epochs": len(result.history),
            "batch_size": config.batch_size, "images": min(config.limit or data.TRAIN_SIZE, data.TRAIN_SIZE),
            "seconds": round(result.seconds, 1), "train_images_per_s": round(result.train_samples_per_s, 1),
            "test_accuracy": round(result.test.accuracy, 2), "device": str(result.device), "ranks": ranks}


def beside_report(dataset: str) -> list[tuple[ReferenceFigure, dict | None]]:
    """The lab report's figures in its order, each with the same network measured here on ``dataset``
    (None where it has not been yet)."""
    from core.zoo import LAB_REPORT

    measured = {row["arch"]: row for row in rows_measured() if row["dataset"] == dataset}
    return [(figure, measured.get(figure.arch)) for figure in LAB_REPORT]


def settings(rows: list[dict]) -> list[tuple[str, int, int, int]]:
    """How the runs were trained, each way once: (device, epochs, batch size, processes)."""
    return sorted({(row["device"], row["epochs"], row["batch_size"], row["ranks"]) for row in rows})


def report_file() -> Path:
    from core import checkpoints  # which needs the trainer, which needs this module (as zoo does)

    return checkpoints.runs_dir() / FILE


def record(row: dict) -> None:
    """Keep a paper-scale run's figures: the latest of each architecture and dataset."""
    rows = {(r["arch"], r["dataset"]): r for r in rows_measured()}
    rows[(row["arch"], row["dataset"])] = row
    path = report_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(rows.values(), key=lambda r: (r["dataset"], list(RESOLUTION).index(r["arch"])))
    from core import checkpoints

    checkpoints.write_atomic(path, json.dumps(ordered, indent=1).encode())


def rows_measured() -> list[dict]:
    """The paper-scale runs measured here; none if nothing was, or the file is unreadable."""
    try:
        rows = json.loads(report_file().read_text())
    except (OSError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict) and r.get("arch") in RESOLUTION] if isinstance(rows, list) else []

