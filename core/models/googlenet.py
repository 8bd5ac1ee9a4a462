"""GoogLeNet, Inception v1 (Szegedy et al., 2014), scaled to 28x28.

The nine Inception modules keep the paper's table of branch widths, divided by four, and the paper's
two auxiliary classifiers after 4a and 4d. The stem shrinks to one 3x3 convolution, a pooling and the
paper's 1x1 + 3x3 pair, so the modules see 14x14 (3a-3b), 7x7 (4a-4e) and 4x4 (5a-5b) maps, half the
paper's sides. Like torchvision's ``googlenet`` we use batch norm after each convolution (from
Inception v2) in place of the paper's local response normalisation, so it trains from scratch quickly.

In training with ``aux_logits`` the model returns ``GoogLeNetOutputs(logits, aux2, aux1)`` (the order
of torchvision's); the trainer adds ``0.3 * (aux1 + aux2)`` to the loss. Otherwise it returns logits.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import Tensor, nn

from core.models import ModelCard, register_model
from core.models._utils import Dropout, he_init, scaled_channels

_CHANNEL_SCALE = 0.25  # a quarter of the paper's channels at width 1
_POOL_BEFORE = {"inception4a": "maxpool3", "inception5a": "maxpool4"}  # torchvision's names


class GoogLeNetOutputs(NamedTuple):
    """Training-time outputs: main logits first, then the heads after 4d and 4a."""

    logits: Tensor
    aux2: Tensor  # the head after inception 4d
    aux1: Tensor  # the head after inception 4a


class BasicConv2d(nn.Module):
    """Convolution, batch norm, ReLU; batch norm makes the conv bias redundant."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches concatenated along channels: 1x1, 1x1 -> 3x3, 1x1 -> 5x5, pool -> 1x1.

    The 1x1 "reduce" convolutions shrink the channels before the costly 3x3 and 5x5 ones; the pooling
    branch gets a 1x1 projection so that it does not pass all input channels through.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        # A true 5x5 as in the paper (torchvision's port uses 3x3 here by an old mistake).
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=5, padding=2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, 1)  # N x out_channels x H x W


class InceptionAux(nn.Module):
    """Auxiliary classifier: average pool, 1x1 conv, a fully connected layer, heavy dropout, logits.

    In training its loss pushes gradient straight into the middle of the network.
    """

    def __init__(self, in_channels: int, num_classes: int, *, conv_channels: int, hidden: int,
                 dropout: float = 0.7) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            # The paper pools 14x14 to 4x4; our 7x7 maps go to 2x2.
            nn.AdaptiveAvgPool2d(2),  # N x C x 2 x 2
            BasicConv2d(in_channels, conv_channels, kernel_size=1),  # N x 32 x 2 x 2
            nn.Flatten(),  # N x 128
            nn.Linear(conv_channels * 2 * 2, hidden),  # N x 256
            nn.ReLU(inplace=True),
            Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class GoogLeNet(nn.Module):
    def __init__(self, inception: dict[str, tuple[int, ...]], *, stem: tuple[int, int, int], aux: tuple[int, int],
                 num_classes: int = 10, in_channels: int = 1, aux_logits: bool = True,
                 dropout: float = 0.4) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        s1, s2, s3 = stem
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        stages["stem"] = nn.Sequential(
            BasicConv2d(in_channels, s1, kernel_size=3, padding=1),  # N x 16 x 28 x 28
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # N x 16 x 14 x 14
            BasicConv2d(s1, s2, kernel_size=1),  # N x 16 x 14 x 14
            BasicConv2d(s2, s3, kernel_size=3, padding=1),  # N x 48 x 14 x 14
        )
        channels = s3
        for name, widths in inception.items():
            if name in _POOL_BEFORE:
                # 14 x 14 -> 7 x 7 before 4a, 7 x 7 -> 4 x 4 before 5a
                stages[_POOL_BEFORE[name]] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            stages[name] = Inception(channels, *widths)
            channels = stages[name].out_channels
        # 3a N x 64 x 14 x 14, 3b N x 120 x 14 x 14, 4a-4d N x 128..132 x 7 x 7, 4e N x 208 x 7 x 7,
        # 5a N x 208 x 4 x 4, 5b N x 256 x 4 x 4
        self.features = nn.Sequential(stages)
        if aux_logits:
            aux_in = {name: stages[name].out_channels for name in ("inception4a", "inception4d")}
            self.aux1: InceptionAux | None = InceptionAux(aux_in["inception4a"], num_classes,
                                                          conv_channels=aux[0], hidden=aux[1])
            self.aux2: InceptionAux | None = InceptionAux(aux_in["inception4d"], num_classes,
                                                          conv_channels=aux[0], hidden=aux[1])
        else:
            self.aux1 = self.aux2 = None
        # Global average pooling instead of AlexNet's wide fully connected layers: far fewer weights.
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # N x 256 x 1 x 1
            nn.Flatten(),  # N x 256
            Dropout(dropout),
            nn.Linear(channels, num_classes),
        )
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        he_init(self, generator, mode="fan_out", linear=0.01)

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        if not (self.training and self.aux_logits):
            return self.classifier(self.features(x))
        # Walk the same stages by hand to tap the auxiliary heads where the paper attached them.
        for name, stage in self.features.named_children():
            x = stage(x)
            if name == "inception4a":
                aux1 = self.aux1(x)
            elif name == "inception4d":
                aux2 = self.aux2(x)
        return GoogLeNetOutputs(self.classifier(x), aux2, aux1)


# The paper's table: 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection.
_INCEPTION_V1: dict[str, tuple[int, ...]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
_STEM = (64, 64, 192)  # the paper's conv 7x7 (here 3x3), conv 1x1 and conv 3x3 widths
_AUX = (128, 1024)  # the paper's auxiliary 1x1 conv and fully connected widths


def _googlenet(inception: dict[str, tuple[int, ...]], *, num_classes: int, in_channels: int, width: float,
               aux_logits: bool) -> GoogLeNet:
    def ch(c: int) -> int:
        return scaled_channels(c, width, _CHANNEL_SCALE)

    return GoogLeNet(
        {name: tuple(ch(c) for c in widths) for name, widths in inception.items()},
        stem=(ch(_STEM[0]), ch(_STEM[1]), ch(_STEM[2])),
        aux=(ch(_AUX[0]), ch(_AUX[1])),
        num_classes=num_classes,
        in_channels=in_channels,
        aux_logits=aux_logits,
    )


@register_model(
    ModelCard(
        name="googlenet",
        title="GoogLeNet (Inception v1)",
        year=2014,
        paper="Szegedy et al., Going deeper with convolutions, CVPR 2015 (arXiv 2014)",
        summary="A 22-layer network made of Inception modules that look at several scales at once, with "
        "fewer weights than AlexNet.",
        ideas=(
            "Inception modules run 1x1, 3x3, 5x5 and pooling branches side by side and concatenate them.",
            "1x1 convolutions shrink the channels before the costly 3x3 and 5x5 ones.",
            "Two auxiliary classifiers after 4a and 4d add their loss (weight 0.3) in training only.",
            "Global average pooling and dropout replace the big fully connected layers.",
            "Batch norm after each convolution, as in torchvision's version, instead of the paper's LRN.",
        ),
        paper_params="about 6.8 M parameters at 224x224",
    )
)
def googlenet(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0,
              aux_logits: bool = True) -> nn.Module:
    return _googlenet(_INCEPTION_V1, num_classes=num_classes, in_channels=in_channels, width=width,
                      aux_logits=aux_logits)
