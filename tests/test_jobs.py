"""Background training jobs, without Streamlit."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from core import checkpoints, gan
from core.jobs import JobManager
from core.training import TrainConfig

TINY = TrainConfig(arch="lenet5", epochs=2, limit=300, batch_size=50)
LONG = TrainConfig(arch="lenet5", epochs=50, limit=3000, batch_size=50)


@pytest.fixture
def manager(tmp_path):
    return JobManager(folder=tmp_path, log_every=1)


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_jobs_run_one_at_a_time_in_order(manager, tmp_path):
    first = manager.submit(TINY, name="first", owner="ann")
    wait_for(lambda: manager.snapshot(first).status == "running")
    second = manager.submit(TINY, name="second", owner="bob")
    waiting = manager.snapshot(second)
    assert waiting.status == "queued" and waiting.position == 1
    a, b = manager.wait(first, timeout=120), manager.wait(second, timeout=120)
    assert (a.status, b.status) == ("done", "done")
    assert a.finished <= b.started
    assert a.result["test_accuracy"] > 10 and len(a.epochs) == 2
    assert len(a.result["confusion"]) == 10 and sum(map(sum, a.result["confusion"])) == 10_000
    assert sorted(r.name for r in checkpoints.read_manifest(tmp_path)) == ["first", "second"]
    assert not manager.busy()

    # A list of the jobs leaves the curves out, and says everything else as the whole snapshot does.
    listed = manager.snapshots(history=False)
    assert [(j.steps, j.epochs) for j in listed] == [((), ())] * 2
    whole = manager.snapshots()
    assert [replace(j, steps=(), epochs=()) for j in whole] == listed and len(whole[0].steps) == len(a.steps) > 0


def test_stop_ends_a_run_within_one_batch_and_keeps_it(manager, tmp_path):
    # Batches of 500, tens of milliseconds each: the reports of 2 ms batches of 50 could still be on their way
    # when the stop was asked (5 counted where 3 + 1 were allowed, on a busy 2-core CI run).
    job = manager.submit(replace(LONG, batch_size=500), name="long", owner="ann")
    wait_for(lambda: len(manager.snapshot(job).steps) >= 3)
    assert not manager.stop(job, owner="bob")  # only the session that started it
    assert manager.stop(job, owner="ann")
    steps_when_asked = len(manager.snapshot(job).steps)
    assert manager.snapshot(job).status == "stopping"
    done = manager.wait(job, timeout=60)
    assert done.status == "stopped"
    assert len(done.steps) <= steps_when_asked + 1  # the batch in flight, no more
    assert done.result["status"] == "stopped"
    assert checkpoints.load(tmp_path / "mnist" / "long.safetensors", arch="lenet5") is not None


def test_a_queued_job_can_be_withdrawn(manager):
    running = manager.submit(LONG, name="long", owner="ann")
    queued = manager.submit(TINY, name="later", owner="bob")
    assert manager.stop(queued, owner="bob")
    assert manager.stop(running, owner="ann")
    assert manager.wait(running, timeout=60).status == "stopped"
    withdrawn = manager.snapshot(queued)
    assert withdrawn.status == "stopped" and withdrawn.started is None


def test_failures_become_failed_jobs_with_a_message(manager, tmp_path):
    diverging = manager.submit(TrainConfig(arch="lenet5-relu", lr=1e4, optimizer="sgd", schedule="constant",
                                           limit=640, batch_size=64), name="boom", owner="ann")
    failed = manager.wait(diverging, timeout=60)
    assert failed.status == "failed"
    assert "diverged" in failed.error and "Lower the learning rate" in failed.error

    no_data = JobManager(folder=tmp_path, data_root=str(tmp_path / "nowhere"))
    missing = no_data.wait(no_data.submit(TINY, name="x", owner="ann"), timeout=60)
    assert missing.status == "failed" and "MNIST_LAB_DATA" in missing.error
    # the worker survives failures and takes the next job
    assert manager.wait(manager.submit(TINY, name="after", owner="ann"), timeout=120).status == "done"


def test_bad_requests_are_refused_at_once(manager):
    with pytest.raises(ValueError, match="batch_size"):
        manager.submit(TrainConfig(batch_size=0), name="x", owner="ann")
    with pytest.raises(ValueError, match="the run name is empty"):
        manager.submit(TINY, name="  ", owner="ann")
    with pytest.raises(ValueError, match="control characters"):
        manager.submit(TINY, name="a\x00b", owner="ann")


def test_names_stay_unique(manager):
    a = manager.submit(TINY, name="mine", owner="ann")
    b = manager.submit(TINY, name="mine", owner="bob")
    assert (manager.snapshot(a).name, manager.snapshot(b).name) == ("mine", "mine-2")
    manager.wait(b, timeout=120)
    c = manager.submit(TINY, name="mine", owner="cy")  # taken by a saved run now too
    assert manager.snapshot(c).name == "mine-3"
    manager.stop(c, owner="cy")  # its name was the point: it need not train
    assert not manager.wait(c, timeout=120).active


def test_snapshots_are_consistent_while_the_worker_writes(manager):
    job = manager.submit(TrainConfig(arch="lenet5", epochs=2, limit=1000, batch_size=25), name="busy", owner="ann")
    problems, seen = [], []
    stop_reading = threading.Event()

    def read():
        while not stop_reading.is_set():
            snap = manager.snapshot(job)
            steps = [s["global_step"] for s in snap.steps]
            if steps != sorted(set(steps)):
                problems.append("steps out of order")
            last = snap.last_step
            if last and last["step"] + (last["epoch"] - 1) * last["steps_per_epoch"] != steps[-1]:
                problems.append("last step and step list disagree")
            if seen and len(steps) < seen[-1]:
                problems.append("history shrank")
            seen.append(len(steps))
            time.sleep(0.002)  # a reader that never lets go of the lock held the worker's reports up: 75 s a test

    reader = threading.Thread(target=read)
    reader.start()
    final = manager.wait(job, timeout=120)
    stop_reading.set()
    reader.join()
    assert final.status == "done" and not problems
    assert len(seen) > 10 and seen[-1] == 2 * 36  # 900 images in batches of 25 per epoch, each logged


def test_a_gan_job_shares_the_queue_shows_its_grids_and_saves_a_scored_generator(manager, tmp_path):
    classifier = manager.submit(TINY, name="first", owner="ann")
    job = manager.submit(gan.GanConfig(epochs=2, limit=640, batch_size=64), name="painter", owner="bob")
    assert manager.snapshot(job).is_gan and manager.snapshot(job).title == "Conditional GAN on MNIST"
    assert manager.snapshot(classifier).title == "LeNet-5 on MNIST"
    done = manager.wait(job, timeout=300)
    assert done.status == "done", done.error
    assert manager.snapshot(classifier).finished <= done.started  # one at a time, in order
    assert [e["epoch"] for e in done.epochs] == [1, 2]
    assert done.epochs[0]["grid"].shape == (298, 298)  # the fixed-noise 10x10 grid of every epoch
    assert len(done.steps) == 20 and {"d_loss", "g_loss"} <= set(done.steps[0])  # 10 batches an epoch
    assert done.progress == 1 and done.last_step["steps_per_epoch"] == 10
    assert len(done.result["scores"]["agreement_per_class"]) == 10
    [record] = [r for r in checkpoints.read_manifest(tmp_path) if r.arch == gan.ARCH]
    assert record.name == "painter" and record.metrics == done.result["scores"]
    assert gan.load_generator(record.path).num_classes == 10


def test_a_gan_job_stops_within_one_batch_and_keeps_its_generator(manager, tmp_path):
    job = manager.submit(gan.GanConfig(epochs=50, limit=6400, batch_size=64), name="long gan", owner="ann")
    wait_for(lambda: len(manager.snapshot(job).steps) >= 2)
    assert manager.stop(job, owner="ann")
    steps_when_asked = manager.snapshot(job).steps[-1]["global_step"]
    done = manager.wait(job, timeout=120)
    assert done.status == "stopped" and done.phase == "stopped, the generator so far saved"
    assert done.steps[-1]["global_step"] <= steps_when_asked + 1  # the batch in flight, no more
    assert (tmp_path / "mnist" / "long-gan.safetensors").exists()
