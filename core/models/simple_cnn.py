"""A plain four-convolution network: the first CNN of most courses, with nothing clever in it.

Two blocks of two 3x3 convolutions, each block closed by 2x2 max pooling, then a small fully connected
head. The convolutions are unpadded ("valid"), as in the Keras and PyTorch MNIST examples: the border
pixels of a digit are blank anyway, and each layer is cheaper on the smaller map.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from core.models import ModelCard, register_model
from core.models._utils import Dropout, he_init, scaled_channels


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    # No conv bias: batch norm's shift replaces it.
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SimpleCNN(nn.Module):
    def __init__(
        self,
        channels: tuple[int, int, int, int] = (32, 32, 64, 64),
        hidden: int = 128,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, c1),  # N x 32 x 26 x 26
            *_conv_bn_relu(c1, c2),  # N x 32 x 24 x 24
            nn.MaxPool2d(2),  # N x 32 x 12 x 12
            *_conv_bn_relu(c2, c3),  # N x 64 x 10 x 10
            *_conv_bn_relu(c3, c4),  # N x 64 x 8 x 8
            nn.MaxPool2d(2),  # N x 64 x 4 x 4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # N x 1024
            nn.Linear(c4 * 4 * 4, hidden),
            nn.ReLU(inplace=True),
            Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        he_init(self, generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _simple_cnn(
    channels: tuple[int, ...], hidden: int, *, num_classes: int, in_channels: int, width: float
) -> SimpleCNN:
    c1, c2, c3, c4 = (scaled_channels(c, width) for c in channels)
    return SimpleCNN((c1, c2, c3, c4), scaled_channels(hidden, width), num_classes=num_classes,
                     in_channels=in_channels)


@register_model(
    ModelCard(
        name="simple-cnn",
        title="Simple CNN",
        year=2015,
        paper="No single paper: the conv-conv-pool network of the Keras and PyTorch MNIST examples",
        summary="Four small convolutions and two poolings, the shortest road from an MLP to a convolutional "
        "network that works well.",
        ideas=(
            "Stacked 3x3 convolutions: two of them see a 5x5 patch with fewer weights.",
            "2x2 max pooling after each pair halves the map: 26, 24, 12, 10, 8, 4 pixels.",
            "Batch norm after every convolution lets it train fast with a large learning rate.",
            "A small fully connected head with dropout reads the 64 maps of 4x4.",
        ),
        paper_params="no paper; the classroom version has about 0.2 M parameters at 28x28",
    )
)
def simple_cnn(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    return _simple_cnn((32, 32, 64, 64), 128, num_classes=num_classes, in_channels=in_channels, width=width)
