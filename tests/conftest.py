"""Shared fixtures. Tests read MNIST from $MNIST_LAB_DATA (CI points it at ../shared/data) and
never write runs into the checkout."""

from __future__ import annotations

import os

import pytest

from core import checkpoints, cost, data, launch


@pytest.fixture(autouse=True, scope="session")
def runs_outside_the_checkout(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(checkpoints.RUNS_ENV, str(tmp_path_factory.mktemp("runs")))
        # The tests' runs train on every core: no page waits for a core here, and the suite takes minutes less.
        patch.setenv(launch.THREADS_ENV, str(os.cpu_count() or 1))
        yield


@pytest.fixture(scope="session")
def mnist_train() -> data.Split:
    return data.load("mnist", train=True)


@pytest.fixture(scope="session")
def mnist_test() -> data.Split:
    return data.load("mnist", train=False)


@pytest.fixture(scope="session")
def cheapest_shipped() -> list[checkpoints.ModelRecord]:
    """The shipped MNIST classifiers, the fewest MACs first: the quickest real models to measure."""
    records = checkpoints.find_models("mnist", include_runs=False)
    if len(records) < 2:
        pytest.skip(f"needs 2 shipped MNIST models, found {len(records)}")
    return sorted(records, key=lambda r: cost.architecture_size(r.arch)[1])
