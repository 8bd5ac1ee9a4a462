"""Helpers that every model family, and every user of a model, shares."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import Tensor, nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode for the block, and back in the mode it had afterwards, also on errors:
    a model shared by several sessions or a trainer is left as it was found."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def scaled_channels(channels: int, width: float, scale: float = 1.0) -> int:
    """A layer's channel (or unit) count at a width multiplier: ``scale`` is the family's share of the
    paper's channels at width 1 (VGG and GoogLeNet a quarter, ResNet 3/16). Never fewer than one."""
    return max(1, round(channels * width * scale))


def he_init(model: nn.Module, generator: torch.Generator | None = None, *, mode: str = "fan_in",
            linear: str | float | None = "he") -> None:
    """He et al.'s (2015) initialisation for ReLU networks: every convolution N(0, 2 / fan) (``mode``:
    fan_in or fan_out), zero biases, batch norm as the identity. Fully connected layers get the same
    (``linear="he"``), N(0, linear²) with a zero bias (a number), or PyTorch's default (None)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) or (linear == "he" and isinstance(m, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu", generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and isinstance(linear, float):
            nn.init.normal_(m.weight, std=linear, generator=generator)
            nn.init.zeros_(m.bias)


class Dropout(nn.Module):
    """Inverted dropout, as ``nn.Dropout``, whose masks come from ``generator`` when one is set.

    ``nn.Dropout`` can only draw from torch's global generator, which every thread of the server shares;
    a trainer hands its models a generator of the run's own instead (issue 14), on the model's device.
    Without one, the masks come from the global generator, as with ``nn.Dropout``.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.generator: torch.Generator | None = None  # not state: weights files hold none

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.empty(x.shape, dtype=torch.bool, device=x.device).bernoulli_(1 - self.p, generator=self.generator)
        # Scaled in training, so that evaluation is the identity.
        return torch.where(keep, x, 0) / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_dropout_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Draw every dropout mask of ``model`` from ``generator`` (on the model's device); None: from torch's."""
    for module in model.modules():
        if isinstance(module, Dropout):
            module.generator = generator


def build_seeded(build: Callable[[], ModuleT], generator: torch.Generator) -> ModuleT:
    """``build()``, with every parameter drawn from ``generator`` as PyTorch's layers draw their own.

    The layers are built on the meta device, where nothing is drawn from torch's global generator (which
    other threads seed and draw from), then made real on the generator's device and initialised here.
    A family's own initialisation is applied on top by the caller.
    """
    with torch.device("meta"):
        model = build()
    model.to_empty(device=generator.device)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            # nn.Linear's and nn.Conv2d's reset_parameters: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both.
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()  # as torch counts it, for transposed convolutions too
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.reset_parameters()  # ones, zeros and fresh running statistics: nothing random
        elif [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            raise TypeError(f"build_seeded cannot initialise a {type(module).__name__} yet: add it here")
    return model
