"""Shared fixtures. Tests read MNIST from $MNIST_LAB_DATA (CI points it at ../shared/data) and
never write runs into the checkout."""

from __future__ import annotations

import pytest

from core import checkpoints, data


@pytest.fixture(autouse=True, scope="session")
def runs_outside_the_checkout(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(checkpoints.RUNS_ENV, str(tmp_path_factory.mktemp("runs")))
        yield


@pytest.fixture(scope="session")
def mnist_train() -> data.Split:
    return data.load("mnist", train=True)


@pytest.fixture(scope="session")
def mnist_test() -> data.Split:
    return data.load("mnist", train=False)
