"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) and ZFNet (Zeiler & Fergus, 2013), one family.

ZFNet is AlexNet with a smaller first kernel and stride, so the first layer keeps finer detail; its
second convolution then takes a stride of 2, which brings the maps back to AlexNet's size so the rest
of the network is identical. At 224x224 the paper went from 11x11/4 to 7x7/2 (and 5x5/1 to 5x5/2);
at 28x28 we go from 5x5/2 to 3x3/1. Channels are a quarter of the paper's, the wide fully connected
layers too (4096 -> 1024), and they still hold most of the weights, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from core.models import ModelCard, register_model
from core.models._utils import Dropout, he_init, scaled_channels


class ConvSpec(NamedTuple):
    out_channels: int
    kernel_size: int
    stride: int
    padding: int


def _lrn() -> nn.LocalResponseNorm:
    # The paper's constants (n=5, alpha=1e-4, beta=0.75, k=2). PyTorch divides alpha by n, so the
    # squares are weighted slightly less than in the paper; at these values LRN mostly rescales by k.
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


def _overlapping_pool() -> nn.MaxPool2d:
    # Kernel 3, stride 2: neighbouring windows overlap by one pixel, which the paper found to overfit
    # slightly less than 2x2 windows. Padding 1 keeps the border rows of our small maps.
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


class AlexNet(nn.Module):
    """Five convolutions with ReLU; LRN + overlapping max pooling after conv1 and conv2, pooling after
    conv5; then three fully connected layers with dropout in the two wide ones.

    AlexNet normalises and then pools; ZFNet pools and then normalises (its Fig. 3), ``pool_first``.
    """

    def __init__(
        self,
        convs: Sequence[ConvSpec],
        hidden: int = 1024,
        *,
        pool_first: bool = False,
        num_classes: int = 10,
        in_channels: int = 1,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if len(convs) != 5:
            raise ValueError(f"AlexNet has five convolutions, got {len(convs)}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i, spec in enumerate(convs):
            layers += [
                nn.Conv2d(channels, spec.out_channels, spec.kernel_size, spec.stride, spec.padding),
                nn.ReLU(inplace=True),
            ]
            if i < 2:
                layers += [_overlapping_pool(), _lrn()] if pool_first else [_lrn(), _overlapping_pool()]
            channels = spec.out_channels
        layers.append(_overlapping_pool())
        # AlexNet: conv1 N x 24 x 14 x 14 -> pool 7 x 7 -> conv2 N x 64 x 7 x 7 -> pool 4 x 4
        # ZFNet:   conv1 N x 24 x 28 x 28 -> pool 14 x 14 -> conv2 (stride 2) N x 64 x 7 x 7 -> pool 4 x 4
        # both:    conv3-5 N x 64 x 4 x 4 -> pool N x 64 x 2 x 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),  # N x 256
            nn.Linear(channels * 2 * 2, hidden),  # N x 1024
            nn.ReLU(inplace=True),
            Dropout(dropout),
            nn.Linear(hidden, hidden),  # N x 1024
            nn.ReLU(inplace=True),
            Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        he_init(self, generator)
        # A small read-out starts every class near equal probability.
        nn.init.normal_(self.classifier[-1].weight, std=0.01, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _alexnet(
    convs: Sequence[ConvSpec], hidden: int, *, pool_first: bool, num_classes: int, in_channels: int, width: float
) -> AlexNet:
    scaled = [spec._replace(out_channels=scaled_channels(spec.out_channels, width)) for spec in convs]
    return AlexNet(scaled, scaled_channels(hidden, width), pool_first=pool_first, num_classes=num_classes,
                   in_channels=in_channels)


# The paper's 96-256-384-384-256 channels, divided by four.
_ALEXNET = (ConvSpec(24, 5, 2, 2), ConvSpec(64, 5, 1, 2), ConvSpec(96, 3, 1, 1), ConvSpec(96, 3, 1, 1),
            ConvSpec(64, 3, 1, 1))
# Only the first two convolutions change: a finer first layer, and a stride-2 second one.
# ZFNet also pools before normalising (see ``pool_first``).
_ZFNET = (ConvSpec(24, 3, 1, 1), ConvSpec(64, 5, 2, 2), *_ALEXNET[2:])


@register_model(
    ModelCard(
        name="alexnet",
        title="AlexNet",
        year=2012,
        paper="Krizhevsky, Sutskever & Hinton, ImageNet classification with deep convolutional neural "
        "networks, NeurIPS 2012",
        summary="The deeper, ReLU-powered CNN whose ImageNet win in 2012 started the deep learning boom.",
        ideas=(
            "ReLU after every convolution trains several times faster than tanh.",
            "Overlapping max pooling: 3x3 windows moved by 2 pixels.",
            "Local response normalisation after the first two convolutions makes neighbouring maps compete.",
            "Dropout in the two wide fully connected layers, which hold most of the weights.",
            "A strided first convolution (5x5/2 here, 11x11/4 in the paper) shrinks the image at once.",
        ),
        paper_params="about 60 M parameters at 224x224",
    )
)
def alexnet(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    return _alexnet(_ALEXNET, 1024, pool_first=False, num_classes=num_classes, in_channels=in_channels,
                    width=width)


@register_model(
    ModelCard(
        name="zfnet",
        title="ZFNet",
        year=2013,
        paper="Zeiler & Fergus, Visualizing and understanding convolutional networks, ECCV 2014 "
        "(arXiv 2013)",
        summary="AlexNet retuned by looking at what its layers see: a smaller first kernel and stride keep "
        "the detail that AlexNet's first layer threw away.",
        ideas=(
            "Feature-map visualisation showed AlexNet's large, strided first filters missing mid frequencies.",
            "A smaller first kernel with stride 1 (3x3/1 here, 7x7/2 in the paper) instead of 5x5/2.",
            "A stride-2 second convolution restores AlexNet's map sizes for the layers above.",
            "Everything else is AlexNet: ReLU, normalisation (after pooling, as in the paper), overlapping "
            "pooling, dropout in wide layers.",
        ),
        paper_params="about 62 M parameters at 224x224",
    )
)
def zfnet(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    # ZFNet normalises after pooling, which at 28x28 also runs LRN on a quarter of the pixels.
    return _alexnet(_ZFNET, 1024, pool_first=True, num_classes=num_classes, in_channels=in_channels,
                    width=width)
