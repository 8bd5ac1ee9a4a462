"""The architecture zoo: one file per family, one registry for the UI, the CLI and the tests.

    >>> from core.models import list_models, get_model, get_card
    >>> model = get_model("resnet18", num_classes=10)
    >>> get_card("resnet18").year
    2015

Every model has the same shape: ``features`` (the convolutional trunk, or the hidden layers of the
MLP) followed by ``classifier`` (pooling/flatten and the fully connected head), and ``forward`` is
``classifier(features(x))``. Feature maps, saliency and layer summaries rely on that alone. Every
family applies its own initialisation in ``init_weights(generator=None)``, so that a trainer can draw
the weights from a generator of its own (``get_model(..., generator=)``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.models._utils import build_seeded
from core.models._utils import evaluating as evaluating  # for every user of a model
from core.models._utils import use_dropout_generator as use_dropout_generator  # for trainers


@dataclass(frozen=True)
class ModelCard:
    """What a student reads beside an architecture: facts that travel with the model."""

    name: str  # registry key, e.g. "resnet18"
    title: str  # display name, e.g. "ResNet-18"
    year: int
    paper: str  # authors, title, venue
    summary: str  # one line: the idea this entry teaches
    ideas: tuple[str, ...]  # 3-5 key ideas kept at our scale
    paper_params: str  # the original's size for contrast, e.g. "11.7 M at 224x224"


Builder = Callable[..., nn.Module]

# What every builder accepts. A weights file's metadata is checked against these before a model is built.
MIN_WIDTH, MAX_WIDTH = 0.05, 4.0  # channel multiplier
MAX_CLASSES = 1000

_BUILDERS: dict[str, Builder] = {}
_CARDS: dict[str, ModelCard] = {}


def register_model(card: ModelCard) -> Callable[[Builder], Builder]:
    """Register a builder ``fn(*, num_classes=10, in_channels=1, width=1.0) -> nn.Module``; the module
    has an ``init_weights(generator=None)`` method that draws the family's initialisation."""

    def wrap(builder: Builder) -> Builder:
        if card.name in _BUILDERS and not card.name.startswith(SPEC_PREFIX):  # a spec's name is its content
            raise ValueError(f"architecture {card.name!r} is registered twice")
        _BUILDERS[card.name] = builder
        _CARDS[card.name] = card
        return builder

    return wrap


SPEC_PREFIX = "spec-"  # the name of a network built in the lab from a spec (core.spec), stored with the runs


def list_models() -> list[str]:
    """The zoo's names in the order it is taught (baselines first, then by year); built networks not included."""
    return [name for name in _BUILDERS if not name.startswith(SPEC_PREFIX)]


def is_known(name: str) -> bool:
    """A zoo architecture, or a network built in the lab whose spec this machine keeps."""
    try:
        _check(name)
    except ValueError:
        return False
    return True


def _check(name: str) -> None:
    if name not in _BUILDERS and name.startswith(SPEC_PREFIX):
        from core import spec  # a built network registers itself from its stored spec, in any process

        spec.register_stored(name)
    if name not in _BUILDERS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {list_models()}")


def get_model(name: str, *, num_classes: int = 10, in_channels: int = 1, width: float = 1.0,
              generator: torch.Generator | None = None) -> nn.Module:
    """Build a freshly initialised model.

    Its weights are drawn from ``generator`` alone when one is given (a trainer's own, which no other
    thread touches); otherwise from torch's global generator: seed torch first for reproducible weights.
    """
    _check(name)
    if not MIN_WIDTH <= width <= MAX_WIDTH:  # also refuses NaN
        raise ValueError(f"width multiplier must be between {MIN_WIDTH} and {MAX_WIDTH}, got {width}")
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be between 1 and {MAX_CLASSES}, got {num_classes}")
    build = functools.partial(_BUILDERS[name], num_classes=num_classes, in_channels=in_channels, width=width)
    if generator is None:
        return build()
    model = build_seeded(build, generator)  # PyTorch's default initialisation, from the generator
    model.init_weights(generator)  # then the family's own
    return model


def get_card(name: str) -> ModelCard:
    _check(name)
    return _CARDS[name]


# Importing the family files fills the registry; their order is the order of list_models().
from core.models import mlp, lenet, simple_cnn, alexnet, vgg, googlenet, resnet, mobilenet  # noqa: E402, F401, I001
