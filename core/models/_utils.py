"""Helpers that every model family, and every user of a model, shares."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


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
