"""VGG (Simonyan & Zisserman, 2014): configurations A (VGG-11) and E (VGG-19).

The configurations are the paper's table, read as data: a number is a 3x3 convolution with that many
output channels, "M" a 2x2 max pooling. At our scale every channel count is divided by four, and the
poolings round up (``ceil_mode``) so that the paper's five of them fit 28x28: 28 -> 14 -> 7 -> 4 -> 2 -> 1.
Like torchvision's ``vgg*_bn`` we put batch norm after each convolution, which the paper did not have
(it trained VGG-19 by initialising it from shallower nets); it lets 19 layers train from scratch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from core.models import ModelCard, register_model
from core.models._utils import Dropout, he_init, scaled_channels

_CHANNEL_SCALE = 0.25  # a quarter of the paper's channels at width 1: 16, 32, 64, 128, 128


def make_layers(cfg: Sequence[int | str], in_channels: int, width: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            # ceil_mode: 7 -> 4 -> 2 -> 1 instead of 7 -> 3 -> 1 -> 0, so all five poolings fit.
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        else:
            out_channels = scaled_channels(int(v), width, _CHANNEL_SCALE)
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, *, hidden: int = 256, num_classes: int = 10,
                 dropout: float = 0.5) -> None:
        super().__init__()
        # stage 1 N x 16 x 28 x 28 -> 14 -> stage 2 N x 32 x 14 x 14 -> 7 -> stage 3 N x 64 x 7 x 7
        # -> 4 -> stage 4 N x 128 x 4 x 4 -> 2 -> stage 5 N x 128 x 2 x 2 -> N x 128 x 1 x 1
        self.features = features
        channels = [m.out_channels for m in features if isinstance(m, nn.Conv2d)][-1]
        # The paper's three fully connected layers with dropout, shrunk from 4096 to 256 units: at
        # 1x1 the trunk hands over only 128 numbers, not 512 x 7 x 7.
        self.classifier = nn.Sequential(
            nn.Flatten(),  # N x 128
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        he_init(self, generator, mode="fan_out")
        # A small read-out starts every class near equal probability.
        nn.init.normal_(self.classifier[-1].weight, std=0.01, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


_CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _vgg(cfg: str, *, num_classes: int, in_channels: int, width: float) -> VGG:
    return VGG(make_layers(_CFGS[cfg], in_channels, width), hidden=scaled_channels(256, width),
               num_classes=num_classes)


@register_model(
    ModelCard(
        name="vgg11",
        title="VGG-11",
        year=2014,
        paper="Simonyan & Zisserman, Very deep convolutional networks for large-scale image recognition, "
        "ICLR 2015 (arXiv 2014)",
        summary="Depth from one repeated brick: 3x3 convolutions stacked between 2x2 poolings, "
        "configuration A with 8 convolutions and 3 fully connected layers.",
        ideas=(
            "Only 3x3 convolutions: two see a 5x5 patch and three a 7x7 one, with fewer weights and more ReLUs.",
            "2x2 max pooling halves the map and the next stage doubles the channels.",
            "Configuration A of the paper's table, with channels divided by four.",
            "Batch norm after each convolution (as torchvision's vgg11_bn), an addition to the paper.",
        ),
        paper_params="about 133 M parameters at 224x224",
    )
)
def vgg11(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    return _vgg("A", num_classes=num_classes, in_channels=in_channels, width=width)


@register_model(
    ModelCard(
        name="vgg19",
        title="VGG-19",
        year=2014,
        paper="Simonyan & Zisserman, Very deep convolutional networks for large-scale image recognition, "
        "ICLR 2015 (arXiv 2014)",
        summary="Configuration E, the deepest of the paper: 16 convolutions of 3x3 and 3 fully connected "
        "layers, to see what depth alone buys.",
        ideas=(
            "The same 3x3 brick as VGG-11, stacked two to four times per stage.",
            "Five stages separated by 2x2 max pooling, channels doubling from 16 to 128.",
            "Configuration E of the paper's table, with channels divided by four.",
            "Batch norm after each convolution (as torchvision's vgg19_bn), without which 19 plain layers "
            "train poorly from scratch.",
        ),
        paper_params="about 144 M parameters at 224x224",
    )
)
def vgg19(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    return _vgg("E", num_classes=num_classes, in_channels=in_channels, width=width)
