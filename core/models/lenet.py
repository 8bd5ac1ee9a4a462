"""LeNet-5 (LeCun et al., 1998) and the ReLU + max-pooling version that modern tutorials teach.

Both keep the paper's layout C1(6) - S2 - C3(16) - S4 - C5(120) - F6(84) - output. The paper fed 32x32
images, so C1 pads our 28x28 digits by 2 and every later layer sees the sizes of the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from core.models import ModelCard, register_model
from core.models._utils import he_init, scaled_channels


class LeNet5(nn.Module):
    """C1 - S2 - C3 - S4 - C5 as ``features``, F6 and the output layer as ``classifier``."""

    def __init__(
        self,
        activation: type[nn.Module],
        pool: type[nn.Module],
        *,
        channels: tuple[int, int, int, int] = (6, 16, 120, 84),
        num_classes: int = 10,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        c1, c3, c5, f6 = channels
        self.uses_relu = activation is nn.ReLU  # PyTorch's defaults already suit tanh
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=5, padding=2),  # C1: N x 6 x 28 x 28
            activation(),
            pool(kernel_size=2, stride=2),  # S2: N x 6 x 14 x 14
            nn.Conv2d(c1, c3, kernel_size=5),  # C3: N x 16 x 10 x 10
            activation(),
            pool(kernel_size=2, stride=2),  # S4: N x 16 x 5 x 5
            # C5 is a convolution whose 5x5 kernel covers all of S4: one "pixel" per feature.
            nn.Conv2d(c3, c5, kernel_size=5),  # C5: N x 120 x 1 x 1
            activation(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # N x 120
            nn.Linear(c5, f6),  # F6: N x 84
            activation(),
            nn.Linear(f6, num_classes),
        )
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        if self.uses_relu:  # the ReLU version; the original keeps PyTorch's default
            he_init(self, generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _lenet(
    activation: type[nn.Module], pool: type[nn.Module], *, num_classes: int, in_channels: int, width: float
) -> LeNet5:
    channels = tuple(scaled_channels(c, width) for c in (6, 16, 120, 84))
    return LeNet5(activation, pool, channels=channels, num_classes=num_classes, in_channels=in_channels)


@register_model(
    ModelCard(
        name="lenet5",
        title="LeNet-5",
        year=1998,
        paper="LeCun, Bottou, Bengio & Haffner, Gradient-based learning applied to document recognition, "
        "Proc. IEEE 1998",
        summary="The convolutional network that read bank cheques: small shared 5x5 filters and subsampling "
        "instead of one weight per pixel.",
        ideas=(
            "Local receptive fields: each unit looks at a 5x5 patch, and the patch's weights are shared.",
            "Subsampling by 2x2 average pooling halves the maps and tolerates small shifts.",
            "Tanh squashing non-linearities, as in the paper.",
            "C5 convolves all of S4 into 120 features; F6 (84 units) and a linear output classify them.",
        ),
        paper_params="about 60 k parameters at 32x32",
    )
)
def lenet5(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    return _lenet(nn.Tanh, nn.AvgPool2d, num_classes=num_classes, in_channels=in_channels, width=width)


@register_model(
    ModelCard(
        name="lenet5-relu",
        title="LeNet-5 (ReLU, max pooling)",
        year=1998,
        paper="LeNet-5's layout (LeCun et al., Proc. IEEE 1998) with the ReLU and max pooling of later work",
        summary="The same layers as LeNet-5 with two modern swaps, so the effect of the activation and the "
        "pooling can be seen alone.",
        ideas=(
            "The exact C1-S2-C3-S4-C5-F6 layout and channel counts of LeNet-5.",
            "ReLU instead of tanh: gradients do not fade where a unit saturates.",
            "2x2 max pooling keeps the strongest response instead of blurring by averaging.",
            "This is the network most tutorials of the 2020s call LeNet-5.",
        ),
        paper_params="about 60 k parameters at 32x32, like LeNet-5",
    )
)
def lenet5_relu(*, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    return _lenet(nn.ReLU, nn.MaxPool2d, num_classes=num_classes, in_channels=in_channels, width=width)
