"""The class's queue: worker processes, crashes, run slots, fairness, limits, the teacher, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from core import checkpoints, gan, worker, zoo
from core.jobs import JobManager, LimitError, Limits, fair_order
from core.launch import GPU_SLOTS, SLOTS_ENV, THREADS_ENV, device_slots, worker_threads
from core.training import TrainConfig

TINY = TrainConfig(arch="lenet5", epochs=2, limit=300, batch_size=50)
LONG = TrainConfig(arch="lenet5", epochs=50, limit=3000, batch_size=50)
KEY = "open sesame"


def wait_for(condition, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)




@pytest.fixture
def manager(tmp_path):
    manager = JobManager(folder=tmp_path, log_every=1, teacher_key=KEY)
    yield manager
    manager.close()


# --- training apart from the pages -----------------------------------------------------------

def test_each_run_trains_in_a_spawned_process_of_its_own(manager):
    job = manager.submit(LONG, name="apart", owner="ann")
    wait_for(lambda: manager.snapshot(job).steps)
    pid = manager.snapshot(job).pid
    assert pid != os.getpid()
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        assert cmdline.read().split(b"\0")[1:3] == [b"-m", b"core.worker"]  # a fresh interpreter, not a fork
    server = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(server + worker.NICENESS, 19)  # the pages go first
    manager.stop(job, owner="ann")
    assert manager.wait(job, timeout=60).status == "stopped"


def test_a_killed_worker_is_a_failed_run_and_the_next_one_starts(manager):
    killed = manager.submit(LONG, name="killed", owner="ann")
    after = manager.submit(TINY, name="after", owner="bob")
    wait_for(lambda: manager.snapshot(killed).steps)
    os.kill(manager.snapshot(killed).pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    failed = manager.wait(killed, timeout=30)
    assert failed.status == "failed"
    assert "killed by SIGKILL (most likely the machine ran out of memory)" in failed.error
    assert manager.wait(after, timeout=120).status == "done"


def test_a_crashed_worker_is_a_failed_run(manager):
    job = manager.submit(LONG, name="crashed", owner="ann")
    wait_for(lambda: manager.snapshot(job).steps)
    os.kill(manager.snapshot(job).pid, signal.SIGSEGV)
    assert "killed by SIGSEGV" in manager.wait(job, timeout=30).error


def test_a_seeded_run_gives_the_same_weights_however_busy_the_server_is(manager, tmp_path):
    quiet = manager.wait(manager.submit(TINY, name="quiet", owner="ann"), timeout=120)
    stop_work = threading.Event()

    def busy_page():  # what thirty students drawing do to the server process: inference and Python
        x = torch.randn(256, 256)
        while not stop_work.is_set():
            torch.manual_seed(1)  # the global generator, which a page might seed or draw from
            _ = [x @ x for _ in range(4)] + [sum(range(1000))]

    pages = [threading.Thread(target=busy_page) for _ in range(3)]
    for page in pages:
        page.start()
    try:
        busy = manager.wait(manager.submit(TINY, name="busy", owner="ann"), timeout=180)
    finally:
        stop_work.set()
        for page in pages:
            page.join()
    weights = [load_file(job.result["file"]) for job in (quiet, busy)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# --- several at once, fairly -----------------------------------------------------------------

def job(id, owner, started=None):
    return SimpleNamespace(id=id, owner=owner, started=started)


def test_the_queue_goes_round_robin_over_students():
    # ann asked for four runs first; bob and cy asked later; ann's first is training now.
    queued = [job(2, "ann"), job(3, "ann"), job(4, "ann"), job(5, "bob"), job(6, "cy"), job(7, "bob")]
    running = [job(1, "ann", started=100.0)]
    order = fair_order(queued, running, running + queued)
    assert [j.id for j in order] == [5, 6, 2, 7, 3, 4]  # bob, cy, then ann's and bob's in turn
    # with nothing running, the one whose last run started longest ago goes first
    finished = [job(8, "bob", started=50.0), job(9, "ann", started=60.0)]
    order = fair_order([job(10, "ann"), job(11, "bob")], [], finished)
    assert [j.owner for j in order] == ["bob", "ann"]


def test_one_students_many_runs_do_not_hold_up_the_others(manager):
    first = manager.submit(LONG, name="ann-1", owner="ann")
    wait_for(lambda: manager.snapshot(first).status == "running")
    mine = [manager.submit(TINY, name=f"ann-{i}", owner="ann", teacher_key=KEY) for i in (2, 3, 4)]
    theirs = manager.submit(TINY, name="bob-1", owner="bob")
    assert manager.snapshot(theirs).position == 1  # before ann's three, asked for earlier
    assert [manager.snapshot(j).position for j in mine] == [2, 3, 4]
    manager.stop(first, owner="ann")
    assert manager.wait(theirs, timeout=120).status == "done"
    assert manager.snapshot(theirs).started < manager.snapshot(mine[0]).started
    for j in mine:
        manager.stop(j, owner="ann")


def test_two_slots_train_two_runs_at_once(tmp_path):
    manager = JobManager(folder=tmp_path, log_every=1, slots={"cpu": 2})
    try:
        jobs = [manager.submit(LONG, name=f"run-{i}", owner=f"student-{i}") for i in (1, 2)]
        wait_for(lambda: all(manager.snapshot(j).steps for j in jobs))
        assert [manager.snapshot(j).status for j in jobs] == ["running", "running"]
        third = manager.submit(TINY, name="third", owner="student-3")
        assert manager.snapshot(third).position == 1  # both slots are taken
        for j in jobs:
            manager.stop(j, owner=manager.snapshot(j).owner)
        assert manager.wait(third, timeout=120).status == "done"
    finally:
        manager.close()


def test_slots_per_device(monkeypatch):
    monkeypatch.delenv(SLOTS_ENV, raising=False)
    assert device_slots("cpu") == {"cpu": 1}
    monkeypatch.setenv(SLOTS_ENV, "3")
    assert device_slots("cpu") == {"cpu": 3}
    monkeypatch.setenv(SLOTS_ENV, "lots")
    with pytest.raises(ValueError, match="MNIST_LAB_SLOTS='lots'"):
        device_slots("cpu")
    if torch.cuda.is_available():
        monkeypatch.delenv(SLOTS_ENV)
        assert set(device_slots().values()) == {GPU_SLOTS}


def test_a_run_on_the_cpu_leaves_a_core_to_the_pages_unless_told(monkeypatch):
    monkeypatch.delenv(THREADS_ENV)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert worker_threads("cpu", {"cpu": 1}) == 15
    assert worker_threads("cpu", {"cpu": 3}) == 5  # the 15 shared between three slots
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert worker_threads("cpu", {"cpu": 1}) == 1
    assert worker_threads("cpu", {"cpu": 3}) == 1
    assert worker_threads("cuda:0", {"cuda:0": 3}) is None  # torch's own
    monkeypatch.setenv(THREADS_ENV, "2")
    assert worker_threads("cpu", {"cpu": 1}) == 2
    monkeypatch.setenv(THREADS_ENV, "0")
    with pytest.raises(ValueError, match="MNIST_LAB_THREADS='0'"):
        worker_threads("cpu", {"cpu": 1})


def test_limits_are_refused_with_the_limit_said(manager):
    too_big = replace(TINY, epochs=21, limit=None)  # 21 x 60,000 images
    with pytest.raises(LimitError, match="at most 1,200,000"):
        manager.submit(too_big, name="big", owner="ann")
    manager.submit(LONG, name="running", owner="ann")
    wait_for(lambda: manager.snapshots()[0].status == "running")
    manager.submit(TINY, name="waits-1", owner="ann")
    manager.submit(TINY, name="waits-2", owner="ann")
    with pytest.raises(LimitError, match="You have 2 runs waiting in the queue"):
        manager.submit(TINY, name="waits-3", owner="ann")
    manager.submit(TINY, name="bob's", owner="bob")  # a limit per student
    manager.submit(too_big, name="teacher's", owner="teacher", teacher_key=KEY)  # the teacher is not limited
    for snap in manager.snapshots():
        manager.stop(snap.id, owner="", teacher_key=KEY)


# --- the teacher -----------------------------------------------------------------------------

def test_only_the_teacher_key_stops_others_runs_deletes_them_and_sets_limits(manager, tmp_path):
    job = manager.submit(LONG, name="ann's", owner="ann")
    wait_for(lambda: manager.snapshot(job).steps)
    assert not manager.stop(job, owner="bob")
    assert not manager.stop(job, owner="bob", teacher_key="guess")
    assert manager.stop(job, owner="teacher", teacher_key=KEY)
    stopped = manager.wait(job, timeout=60)
    assert stopped.status == "stopped"

    [record] = checkpoints.read_manifest(tmp_path)
    with pytest.raises(ValueError, match="someone else's run"):
        manager.delete_run(record, owner="bob", teacher_key="guess")
    manager.delete_run(record, owner="teacher", teacher_key=KEY)
    assert checkpoints.read_manifest(tmp_path) == [] and not record.path.exists()

    with pytest.raises(PermissionError, match="only the teacher"):
        manager.set_limits(Limits(queued_per_student=5), teacher_key=None)
    with pytest.raises(ValueError, match="queued runs per student"):
        manager.set_limits(Limits(queued_per_student=0), teacher_key=KEY)
    manager.set_limits(Limits(queued_per_student=5, epoch_images=2_000_000), teacher_key=KEY)
    manager.close()
    assert JobManager(folder=tmp_path, teacher_key=KEY).limits == Limits(5, 2_000_000)  # kept across a restart


def test_without_a_key_set_nobody_is_the_teacher(tmp_path):
    manager = JobManager(folder=tmp_path, teacher_key="")
    assert not manager.is_teacher("") and not manager.is_teacher(None) and not manager.is_teacher("anything")


# --- remembered ------------------------------------------------------------------------------

SERVER = """
import os, sys, time
from pathlib import Path
from core.jobs import JobManager
from core.training import TrainConfig
manager = JobManager(folder=Path(sys.argv[1]), log_every=5)
job = manager.submit(TrainConfig(arch="lenet5", epochs=4, limit=1000, batch_size=50), name="cut short", owner="ann")
while len(manager.snapshot(job).epochs) < 2:
    time.sleep(0.05)
os.kill(os.getpid(), 9)  # the server dies hard, with the run half done
"""


def test_a_restart_shows_past_runs_and_resumes_an_interrupted_one_where_it_stopped(tmp_path):
    quick = JobManager(folder=tmp_path / "whole", log_every=5)
    whole = quick.wait(quick.submit(TrainConfig(arch="lenet5", epochs=4, limit=1000, batch_size=50),
                                    name="whole", owner="ann"), timeout=120)
    quick.close()

    runs = tmp_path / "runs"
    died = subprocess.run([sys.executable, "-c", textwrap.dedent(SERVER), str(runs)], cwd=checkpoints.REPO,
                          timeout=180)
    assert died.returncode == -9
    restarted = JobManager(folder=runs, log_every=5)
    try:
        [job] = restarted.snapshots()
        assert job.status == "interrupted" and "after epoch 2" in job.phase
        assert job.name == "cut short" and job.owner == "ann" and len(job.epochs) == 2 and job.steps
        assert not restarted.resume(job.id, owner="bob")
        assert restarted.resume(job.id, owner="ann")
        done = restarted.wait(job.id, timeout=120)
        assert done.status == "done", done.error
        assert [e["epoch"] for e in done.epochs] == [1, 2, 3, 4]
        # the same run as one that was never interrupted: curves, and weights to the bit
        assert [e["train_loss"] for e in done.epochs] == [e["train_loss"] for e in whole.epochs]
        resumed, uninterrupted = load_file(done.result["file"]), load_file(whole.result["file"])
        assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    finally:
        restarted.close()
    again = JobManager(folder=runs)  # and a later start still shows it, finished
    assert [(j.name, j.status, len(j.epochs)) for j in again.snapshots()] == [("cut short", "done", 4)]
    assert again.snapshots()[0].result["test_accuracy"] == done.result["test_accuracy"]


def test_an_interrupted_gan_resumes_from_its_last_finished_epoch(tmp_path):
    first = JobManager(folder=tmp_path, log_every=10)
    job = first.submit(gan.GanConfig(epochs=3, limit=3200, batch_size=64, width=8), name="painter", owner="ann")
    wait_for(lambda: first.snapshot(job).epochs, timeout=180)
    first.close()  # the server stops with the run part-way
    restarted = JobManager(folder=tmp_path, log_every=10)
    try:
        [interrupted] = restarted.snapshots()
        kept = interrupted.epochs
        assert interrupted.status == "interrupted" and 1 <= len(kept) < 3
        assert restarted.resume(job, owner="ann")
        done = restarted.wait(job, timeout=300)
        assert done.status == "done", done.error
        assert [e["epoch"] for e in done.epochs] == [1, 2, 3]
        losses = [(e["d_loss"], e["g_loss"]) for e in done.epochs]
        assert losses[:len(kept)] == [(e["d_loss"], e["g_loss"]) for e in kept]  # kept, not trained again
        batches = [s["global_step"] for s in done.steps]
        assert batches == sorted(set(batches)) and batches[-1] == 3 * 50
        assert done.result["epochs"] == 3 and len(done.result["scores"]["agreement_per_class"]) == 10
        assert not list((tmp_path / "jobs").glob("*.progress.safetensors"))
    finally:
        restarted.close()


def test_a_store_that_cannot_be_written_keeps_the_jobs_in_memory_and_says_so(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    manager = JobManager(folder=blocker / "runs")
    assert "cannot keep the jobs there" in manager.store_problem


# --- how long it will take -------------------------------------------------------------------

def test_the_estimate_comes_from_the_speed_measured_here(manager):
    shipped = manager.estimate(TINY)
    assert shipped is not None and "shipped model's training" in shipped.basis
    done = manager.wait(manager.submit(replace(TINY, limit=2000), name="measured", owner="ann"), timeout=120)
    estimate = manager.estimate(replace(TINY, epochs=10, limit=None))
    assert "measured by “measured”" in estimate.basis
    images = 10 * 60_000 * (1 - TINY.val_split)
    assert estimate.seconds == pytest.approx(images / done.samples_per_s)
    wider = manager.estimate(replace(TINY, epochs=10, limit=None, width=2.0))
    assert wider.seconds > estimate.seconds  # more MACs per image


# --- timing the zoo --------------------------------------------------------------------------

def test_timing_the_zoo_is_a_queued_job_whose_figures_the_pages_read(manager):
    architecture = ("mlp", 10, 0.5)
    cpu = torch.device("cpu")
    job = manager.submit(zoo.TimingJob((architecture,), refresh=True), name="zoo timing", owner="ann")
    snap = manager.snapshot(job)
    assert (snap.kind, snap.title) == ("timing", "Timing 1 architecture on this machine")
    done = manager.wait(job, timeout=120)
    assert done.status == "done" and done.progress == 1, done.error
    [speed] = zoo.architecture_speeds([architecture], devices=[cpu], measure=False)[architecture].values()
    assert speed.latency_ms > 0 and speed.images_per_s > 0  # measured by the worker, read from the cache
    # a page that asks without measuring gets nothing for what was never timed, and times nothing
    assert zoo.architecture_speeds([("mlp", 10, 0.25)], devices=[cpu], measure=False) == {("mlp", 10, 0.25): {}}
