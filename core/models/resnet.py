"""ResNet (He, Zhang, Ren & Sun, 2015): ResNet-18 scaled to 28x28.

The four stages of two basic blocks each are the paper's; the 7x7/2 stem and its max pooling, made for
224x224 photos, become one 3x3 convolution at full resolution (as the paper's own CIFAR networks do),
so the stages see 28, 14, 7 and 4 pixels. Channels are 3/16 of the paper's 64-128-256-512.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from core.models import ModelCard, register_model
from core.models._utils import he_init, scaled_channels

_CHANNEL_SCALE = 0.1875  # 3/16 of the paper's channels at width 1: 12, 24, 48, 96


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    # No bias: the batch norm after every convolution has its own shift.
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions whose output is added to the block's input: y = relu(F(x) + shortcut(x)).

    The shortcut is the identity when the shapes agree and a strided 1x1 convolution with batch norm
    (the paper's "projection", option B) where a stage halves the map and doubles the channels.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock], layers: list[int], planes: tuple[int, int, int, int], *,
                 num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.inplanes = planes[0]
        self.features = nn.Sequential(
            nn.Sequential(  # stem: N x 12 x 28 x 28
                conv3x3(in_channels, self.inplanes),
                nn.BatchNorm2d(self.inplanes),
                nn.ReLU(inplace=True),
            ),
            self._make_layer(block, planes[0], layers[0]),  # N x 12 x 28 x 28
            self._make_layer(block, planes[1], layers[1], stride=2),  # N x 24 x 14 x 14
            self._make_layer(block, planes[2], layers[2], stride=2),  # N x 48 x 7 x 7
            self._make_layer(block, planes[3], layers[3], stride=2),  # N x 96 x 4 x 4
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # N x 96 x 1 x 1
            nn.Flatten(),  # N x 96
            nn.Linear(self.inplanes, num_classes),  # PyTorch's default initialisation, as torchvision's
        )
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        he_init(self, generator, mode="fan_out", linear=None)  # the read-out: PyTorch's default, as torchvision

    def _make_layer(self, block: type[BasicBlock], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [block(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _resnet(block: type[BasicBlock], layers: list[int], *, num_classes: int, in_channels: int,
            width: float) -> ResNet:
    planes = tuple(scaled_channels(c, width, _CHANNEL_SCALE) for c in (64, 128, 256, 512))
    return ResNet(block, layers, planes, num_classes=num_classes, in_channels=in_channels)


@register_model(
    ModelCard(
        name="resnet18",
        title="ResNet-18",
        year=2015,
        paper="He, Zhang, Ren & Sun, Deep residual learning for image recognition, CVPR 2016 (arXiv 2015)",
        summary="Blocks that learn a correction added to their input, so that very deep networks train as "
        "easily as shallow ones.",
        ideas=(
            "Residual basic blocks: two 3x3 convolutions whose output is added to the block's input.",
            "Identity shortcuts inside a stage, strided 1x1 projection shortcuts where the shape changes.",
            "Batch norm after every convolution.",
            "Four stages of two blocks, each halving the map and doubling the channels, then global "
            "average pooling.",
        ),
        paper_params="about 11.7 M parameters at 224x224",
    )
)
def resnet18(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, in_channels=in_channels, width=width)
