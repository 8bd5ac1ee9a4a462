"""core/bench.py: one model's latency and throughput are sensible numbers."""

from __future__ import annotations

import pytest

from core import bench
from core.models import get_model


@pytest.mark.parametrize(("arch", "width"), [("lenet5-relu", 1.0), ("mlp", 0.25)])
def test_speed_is_positive_and_batches_pay(arch, width):
    speed = bench.measure_speed(get_model(arch, width=width), batch_size=256, repeats=2)
    assert speed.latency_ms > 0 and speed.images_per_s > 0
    assert (speed.batch_size, speed.repeats) == (256, 2)
    # One image at a time pays Python's and the framework's overhead on every call.
    assert speed.images_per_s > 1000 / speed.latency_ms
