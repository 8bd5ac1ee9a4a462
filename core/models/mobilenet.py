"""MobileNet v1 (Howard et al., 2017): depthwise separable convolutions and a width multiplier.

The thirteen separable blocks and their strides are the paper's; only the first convolution keeps the
full 28x28 (the paper's stride 2 suits 224x224), so the blocks see 28, 14, 7, 4 and 2 pixels. At width
1 the channels are half the paper's, i.e. the paper's own 0.5 MobileNet; ``width`` is the multiplier
alpha on top of that.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from core.models import ModelCard, register_model
from core.models._utils import he_init, scaled_channels

_CHANNEL_SCALE = 0.5  # half the paper's channels at width 1: 16 ... 512


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparable(nn.Module):
    """A 3x3 depthwise convolution (one filter per channel: where) then a 1x1 pointwise one (what).

    Together they cost about 1/9 + 1/C_out of a full 3x3 convolution, the paper's central saving.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = _conv_bn_relu(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = _conv_bn_relu(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNet(nn.Module):
    def __init__(self, stem: int, blocks: list[tuple[int, int]], *, num_classes: int = 10,
                 in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(in_channels, stem, 3)]  # N x 16 x 28 x 28
        channels = stem
        for out_channels, stride in blocks:
            layers.append(DepthwiseSeparable(channels, out_channels, stride))
            channels = out_channels
        # blocks: N x 32 x 28 x 28 -> N x 64 x 14 x 14 -> N x 128 x 7 x 7 -> N x 256 x 4 x 4 (six blocks)
        # -> N x 512 x 2 x 2
        self.features = nn.Sequential(*layers)
        # The paper has no hidden fully connected layer: global average pooling, then the classifier.
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # N x 512 x 1 x 1
            nn.Flatten(),  # N x 512
            nn.Linear(channels, num_classes),
        )
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        he_init(self, generator, mode="fan_out", linear=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


# The paper's Table 1 (output channels, stride) after the first convolution.
_MOBILENET_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1)]


def _mobilenet(blocks: list[tuple[int, int]], *, num_classes: int, in_channels: int, width: float) -> MobileNet:
    def ch(c: int) -> int:
        return scaled_channels(c, width, _CHANNEL_SCALE)

    return MobileNet(ch(32), [(ch(c), s) for c, s in blocks], num_classes=num_classes, in_channels=in_channels)


@register_model(
    ModelCard(
        name="mobilenet",
        title="MobileNet v1",
        year=2017,
        paper="Howard et al., MobileNets: efficient convolutional neural networks for mobile vision "
        "applications, arXiv 2017",
        summary="A network for phones that splits every convolution into a per-channel 3x3 filter and a "
        "1x1 mix, for a fraction of the cost.",
        ideas=(
            "Depthwise separable convolutions: a 3x3 filter per channel, then a 1x1 convolution across channels.",
            "About eight to nine times fewer multiply-adds than full 3x3 convolutions of the same widths.",
            "The width multiplier alpha thins every layer at once, trading accuracy for speed.",
            "Batch norm and ReLU after both halves of each block; global average pooling before the classifier.",
        ),
        paper_params="about 4.2 M parameters at 224x224 (1.0 MobileNet-224)",
    )
)
def mobilenet(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    return _mobilenet(_MOBILENET_V1, num_classes=num_classes, in_channels=in_channels, width=width)
