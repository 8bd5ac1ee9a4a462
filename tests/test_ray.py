"""The job queue on a Ray cluster: a local Ray of two CPUs runs two tiny jobs as actors, their progress and
results come back as from the local workers, and one stops within a batch."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from core import checkpoints
from core.jobs import JobManager
from core.training import TrainConfig

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt")
raylaunch = pytest.importorskip("core.raylaunch")

TINY = TrainConfig(arch="lenet5", epochs=2, limit=300, batch_size=50)
LONG = TrainConfig(arch="lenet5", epochs=50, limit=3000, batch_size=500)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 1024**2)
    yield
    ray.shutdown()


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_address_with_no_cluster_is_said_plainly():
    with pytest.raises(ConnectionError, match="MNIST_LAB_RAY=auto: no Ray cluster answers there"):
        raylaunch.RayLauncher("auto")  # first, before this module starts its own cluster


def test_runs_train_as_ray_actors_with_their_progress_and_results_and_stop_within_a_batch(cluster, tmp_path):
    manager = JobManager(folder=tmp_path, log_every=1, launcher=raylaunch.RayLauncher())
    try:
        assert manager.slots == {raylaunch.PLACE: 2}  # the cluster's two CPUs, one a run
        finished = manager.submit(TINY, name="through ray", owner="ann")
        stopped = manager.submit(LONG, name="stopped in ray", owner="bob")
        wait_for(lambda: len(manager.snapshot(stopped).steps) >= 3)
        assert manager.stop(stopped, owner="bob")
        asked_at = manager.snapshot(stopped).steps[-1]["global_step"]

        done = manager.wait(finished, timeout=120)
        assert done.status == "done", done.error
        assert [e["epoch"] for e in done.epochs] == [1, 2] and done.progress == 1.0
        assert len(done.steps) >= 6 and done.samples_per_s > 0 and done.device.startswith("CPU")
        assert done.result["name"] == "through ray" and done.result["test_accuracy"] > 0
        assert checkpoints.load(tmp_path / "mnist" / "through-ray.safetensors", arch="lenet5") is not None

        halted = manager.wait(stopped, timeout=120)
        assert halted.status == "stopped" and halted.result["status"] == "stopped"
        assert halted.steps[-1]["global_step"] <= asked_at + 1  # the batch in flight, no more
        assert (tmp_path / "mnist" / "stopped-in-ray.safetensors").exists()
    finally:
        manager.close()


def test_a_run_asks_ray_for_a_share_of_a_gpu_or_the_cpus_it_trains_on(monkeypatch):
    assert raylaunch.resources(TINY, gpus=True) == {"num_cpus": 1, "num_gpus": 1 / 3}  # three share a GPU
    wide = replace(TINY, arch="vgg19", width=4.0)  # far over the classroom budget: a GPU of its own
    assert raylaunch.resources(wide, gpus=True)["num_gpus"] == 1
    assert raylaunch.resources(TINY, gpus=False) == {"num_cpus": 1, "num_gpus": 0}
    monkeypatch.setenv(raylaunch.CPUS_ENV, "4")
    assert raylaunch.resources(TINY, gpus=False)["num_cpus"] == 4
    monkeypatch.setenv(raylaunch.CPUS_ENV, "none")
    with pytest.raises(ValueError, match="MNIST_LAB_RAY_CPUS"):
        raylaunch.resources(TINY, gpus=False)
