"""A multilayer perceptron: the fully connected baseline every convolutional network is measured against.

It sees the image as 784 unrelated numbers, so it has to learn separately that a stroke shifted by one
pixel is the same stroke; the convolutional networks of the zoo get that for free from weight sharing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from core.models import ModelCard, register_model
from core.models._utils import Dropout, he_init, scaled_channels


class MLP(nn.Module):
    """Flatten, then Linear + ReLU + Dropout for every hidden layer, then a linear read-out."""

    def __init__(
        self,
        hidden: Sequence[int],
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]  # N x C x 28 x 28 -> N x 784C
        fan_in = in_channels * image_size * image_size
        for units in hidden:
            layers += [nn.Linear(fan_in, units), nn.ReLU(inplace=True), Dropout(dropout)]
            fan_in = units
        self.features = nn.Sequential(*layers)  # N x hidden[-1]
        self.classifier = nn.Linear(fan_in, num_classes)
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        # He initialisation keeps the ReLU layers' activations at a steady scale.
        he_init(self, generator)
        # A small read-out starts every class near equal probability.
        nn.init.normal_(self.classifier.weight, std=0.01, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _mlp(hidden: Sequence[int], *, num_classes: int, in_channels: int, width: float) -> MLP:
    return MLP([scaled_channels(u, width) for u in hidden], num_classes=num_classes, in_channels=in_channels)


@register_model(
    ModelCard(
        name="mlp",
        title="MLP",
        year=1986,
        paper="Rumelhart, Hinton & Williams, Learning representations by back-propagating errors, Nature 1986",
        summary="A network of fully connected layers only, the baseline that shows what convolutions add.",
        ideas=(
            "The image is flattened into 784 numbers, so every pixel position is learnt on its own.",
            "Two hidden layers of 1024 and 512 ReLU units learn the features.",
            "Dropout between the layers fights the overfitting of so many weights.",
            "Most of its weights sit in the first layer, which nonetheless knows nothing of neighbouring pixels.",
        ),
        paper_params="no single original; LeCun et al. (1998) compare MNIST MLPs of about 0.2-0.8 M parameters",
    )
)
def mlp(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    return _mlp([1024, 512], num_classes=num_classes, in_channels=in_channels, width=width)
