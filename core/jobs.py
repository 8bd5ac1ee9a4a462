"""Training runs as background jobs owned by the server process, not by a browser session.

A JobManager keeps a queue and one worker thread: runs go one at a time, in the order they were
asked for, and go on through page switches, reloads and closed tabs. The worker never touches the
UI; it writes into a job record under a lock, and pages read immutable snapshots of it. A job trains
a classifier (a TrainConfig) or a conditional GAN (a GanConfig); both share the queue, since both
want the whole machine.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import torch

from core import checkpoints, data, gan, metrics
from core.models import get_card
from core.training import (
    Callback,
    EpochEvent,
    Progress,
    StepEvent,
    TrainConfig,
    Trainer,
    TrainingError,
    describe_device,
)

Status = Literal["queued", "running", "stopping", "done", "stopped", "failed"]
FINISHED = ("done", "stopped", "failed")
JobConfig = TrainConfig | gan.GanConfig


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job at one moment, safe to read without the lock."""

    id: int
    name: str
    owner: str
    config: JobConfig
    status: Status
    position: int | None  # 1-based place in the queue while queued
    created: float
    started: float | None
    finished: float | None
    device: str
    phase: str  # what the worker is doing, for the status line
    # per logging interval: global_step, epoch and loss, accuracy, lr (classifier) or d_loss, g_loss (GAN)
    steps: tuple[dict, ...]  # empty in a snapshot taken without history (JobManager.snapshots)
    epochs: tuple[dict, ...]  # per finished epoch: EpochEvent fields, or GanEpoch's with the grid; the same
    progress: float  # 0..1 of all planned batches
    samples_per_s: float
    eta_s: float | None
    last_step: dict | None  # the latest step event's fields (epoch, epochs, step, steps_per_epoch, ...)
    error: str | None
    result: dict | None  # when finished: summary, and the confusion matrix or the scores, saved file

    @property
    def active(self) -> bool:
        return self.status not in FINISHED

    @property
    def is_gan(self) -> bool:
        return isinstance(self.config, gan.GanConfig)

    @property
    def title(self) -> str:
        """What is being trained on what, e.g. "LeNet-5 on MNIST"."""
        trained = "Conditional GAN" if self.is_gan else get_card(self.config.arch).title
        return f"{trained} on {data.get_spec(self.config.dataset).title}"


@dataclass
class _Job:
    id: int
    name: str
    owner: str
    config: JobConfig
    created: float = field(default_factory=time.time)
    status: Status = "queued"
    started: float | None = None
    finished: float | None = None
    device: str = ""
    phase: str = "waiting in the queue"
    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    progress: float = 0.0
    samples_per_s: float = 0.0
    eta_s: float | None = None
    last_step: dict | None = None
    error: str | None = None
    result: dict | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    trainer: Trainer | gan.GanTrainer | None = None  # while it trains: what the stop button stops


class _JobProgress(Callback):
    """Copies either trainer's events into the job record; the lock keeps snapshots whole."""

    def __init__(self, job: _Job, lock: threading.Lock) -> None:
        self.job, self.lock = job, lock

    def on_start(self, trainer: Trainer | gan.GanTrainer) -> None:
        with self.lock:
            self.job.phase = "training"

    def on_step(self, trainer: Trainer | gan.GanTrainer, event: StepEvent | gan.GanStep) -> None:
        _record_step(self.job, self.lock, event)

    def on_epoch_end(self, trainer: Trainer | gan.GanTrainer, event: EpochEvent | gan.GanEpoch) -> None:
        with self.lock:
            self.job.epochs.append(asdict(event))

    def on_evaluate(self, trainer: Trainer) -> None:
        with self.lock:
            self.job.phase = "scoring the test set"


_PROGRESS_FIELDS = {f.name for f in fields(Progress)}  # what every step event has; the rest is what it measured


def _record_step(job: _Job, lock: threading.Lock, event: Progress) -> None:
    """A step event into the job record: one point of the curves (loss, accuracy and lr, or the GAN's
    d_loss and g_loss), and the progress bar."""
    measured = {k: v for k, v in asdict(event).items() if k not in _PROGRESS_FIELDS}
    with lock:
        job.steps.append({"global_step": event.global_step, "epoch": event.epoch, **measured})
        job.last_step = asdict(event)
        job.progress, job.samples_per_s, job.eta_s = event.progress, event.samples_per_s, event.eta_s


def failure_message(error: BaseException) -> str:
    """What a student can act on, for every way a run can fail."""
    if isinstance(error, (TrainingError, ValueError, checkpoints.CheckpointError)):
        return str(error)
    if isinstance(error, data.DatasetDamaged):
        return str(error)
    if isinstance(error, data.DatasetNotFound):
        return f"The dataset is missing. {error}"
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return "Out of memory: choose a smaller batch size, or a smaller width."
    return f"Unexpected {type(error).__name__}: {error}"


class JobManager:
    """A FIFO queue of training jobs run one at a time by a worker thread.

    ``folder`` receives the saved runs (default: ``checkpoints.runs_dir()``), never ``weights/``.
    """

    def __init__(
        self,
        *,
        device: str | None = None,
        data_root: str | None = None,
        folder: Path | None = None,
        log_every: int = 10,
    ) -> None:
        self.device, self.data_root, self.folder, self.log_every = device, data_root, folder, log_every
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count(1)
        checkpoints.remove_leftovers(self._folder())  # what a server killed mid-save left behind
        self._worker = threading.Thread(target=self._work, name="training-jobs", daemon=True)
        self._worker.start()

    # --- what pages call --------------------------------------------------------------------

    def submit(self, config: JobConfig, *, name: str, owner: str) -> int:
        """Queue a run (a classifier or a GAN); returns its job id. Raises ValueError for a bad config or name."""
        config = replace(config, log_every=self.log_every)
        config.validate()
        name = checkpoints.check_name(name)
        checkpoints.check_writable(self._folder())  # refused now, not after the whole training
        with self._lock:
            job = _Job(next(self._ids), self._unique_name(name), owner, config)
            self._jobs[job.id] = job
            self._wake.notify()
        return job.id

    def stop(self, job_id: int, *, owner: str) -> bool:
        """Ask a job to stop; only its owner may. A queued job is withdrawn, a running one stops
        before its next batch and keeps its best weights so far."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.owner != owner or job.status in FINISHED:
                return False
            job.stop.set()
            if job.trainer is not None:
                job.trainer.should_stop = True
            if job.status == "queued":
                job.status, job.phase, job.finished = "stopped", "withdrawn from the queue", time.time()
            else:
                job.status, job.phase = "stopping", "stopping after this batch"
            return True

    def snapshot(self, job_id: int) -> JobSnapshot:
        with self._lock:
            return self._snapshot(self._jobs[job_id], self._positions(), history=True)

    def snapshots(self, *, history: bool = True) -> list[JobSnapshot]:
        """Every job of this server, oldest first. Without ``history`` their curves are left out (``steps``
        and ``epochs`` empty): what a list of the jobs needs, at a cost that does not grow as they train,
        for every rerun of every student's page."""
        with self._lock:
            positions = self._positions()
            return [self._snapshot(job, positions, history=history) for job in self._jobs.values()]

    def busy(self) -> bool:
        with self._lock:
            return any(job.status not in FINISHED for job in self._jobs.values())

    def wait(self, job_id: int, timeout: float | None = None) -> JobSnapshot:
        """Block until a job has finished (for scripts and tests; pages poll snapshots)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            snap = self.snapshot(job_id)
            if not snap.active or (deadline is not None and time.monotonic() > deadline):
                return snap
            time.sleep(0.02)

    # --- inside ----------------------------------------------------------------------------

    def _unique_name(self, name: str) -> str:
        taken = {job.name for job in self._jobs.values()}
        taken |= {r.name for r in checkpoints.read_manifest(self._folder())}
        candidates = itertools.chain([name], (f"{name}-{i}" for i in itertools.count(2)))
        return next(c for c in candidates if c not in taken)

    def _folder(self) -> Path:
        return self.folder or checkpoints.runs_dir()

    def _positions(self) -> dict[int, int]:
        """Each queued job's 1-based place in the queue."""
        queued = (j.id for j in self._jobs.values() if j.status == "queued")
        return {job_id: place for place, job_id in enumerate(queued, start=1)}

    def _snapshot(self, job: _Job, positions: dict[int, int], *, history: bool) -> JobSnapshot:
        return JobSnapshot(
            id=job.id, name=job.name, owner=job.owner, config=job.config, status=job.status,
            position=positions.get(job.id), created=job.created, started=job.started, finished=job.finished,
            device=job.device, phase=job.phase, steps=tuple(job.steps) if history else (),
            epochs=tuple(job.epochs) if history else (), progress=job.progress,
            samples_per_s=job.samples_per_s, eta_s=job.eta_s, last_step=job.last_step, error=job.error,
            result=job.result,
        )

    def _next_job(self) -> _Job:
        with self._wake:
            while True:
                queued = [j for j in self._jobs.values() if j.status == "queued"]
                if queued:
                    job = queued[0]
                    job.status, job.started, job.phase = "running", time.time(), "loading the data"
                    return job
                self._wake.wait()

    def _work(self) -> None:
        while True:
            job = self._next_job()
            try:
                outcome = self._run(job)
            except Exception as error:  # noqa: BLE001 - every failure becomes a failed job
                with self._lock:
                    job.status, job.error, job.phase = "failed", failure_message(error), "failed"
            else:
                with self._lock:
                    job.result = outcome
                    job.status = "stopped" if outcome["status"] == "stopped" else "done"
                    job.phase = (outcome.get("divergence") or "saved") if job.status == "done" else (
                        "stopped, the generator so far saved" if isinstance(job.config, gan.GanConfig)
                        else "stopped, best weights saved")
            finally:
                with self._lock:
                    job.finished = time.time()
                    job.trainer = None  # and with it the model and the data on the device

    def _run(self, job: _Job) -> dict:
        return self._run_gan(job) if isinstance(job.config, gan.GanConfig) else self._run_classifier(job)

    def _attach(self, job: _Job, trainer: Trainer | gan.GanTrainer) -> None:
        """Show where the job runs, and let its stop button reach the trainer; a stop asked for while
        the data loaded stops it before its first batch."""
        with self._lock:
            job.device = describe_device(trainer.device)
            job.trainer = trainer
            trainer.should_stop = job.stop.is_set()

    def _run_classifier(self, job: _Job) -> dict:
        trainer = Trainer(job.config, device=self.device, data_root=self.data_root,
                          callbacks=[_JobProgress(job, self._lock)])
        self._attach(job, trainer)
        result = trainer.fit()
        with self._lock:
            job.phase = "saving"
        summary = result.summary()
        record = checkpoints.save_classifier(result.model, name=job.name, arch=job.config.arch,
                                             dataset=job.config.dataset, summary=summary, folder=self._folder(),
                                             owner=job.owner)
        with self._lock:
            job.name = record.name  # another program may have saved a run of that name meanwhile
        labels = trainer.test_split().labels.cpu()
        classes = len(data.get_spec(job.config.dataset).classes)
        confusion = metrics.confusion_matrix(result.test.predictions, labels, classes)
        return {**summary, "confusion": confusion.tolist(), "file": str(record.path)}

    def _run_gan(self, job: _Job) -> dict:
        trainer = gan.GanTrainer(job.config, device=self.device, data_root=self.data_root,
                                 callbacks=[_JobProgress(job, self._lock)])
        self._attach(job, trainer)
        result = trainer.fit()
        with self._lock:
            job.phase = "scoring (label agreement, diversity, FID) and saving"
        record = gan.save_generator(
            result, name=job.name, folder=self._folder(), owner=job.owner,
            score=lambda generator: gan.score(generator, job.config.dataset, per_class=200, data_root=self.data_root))
        with self._lock:
            job.name = record.name
        return {**result.summary(), "status": "stopped" if result.stopped else "done",
                "scores": record.metrics, "file": str(record.path)}
