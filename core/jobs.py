"""Training runs as background jobs of the server, each in a worker process of its own.

A JobManager keeps the class's queue: a number of run slots per device (``MNIST_LAB_SLOTS``), filled
round-robin over the students who asked, within limits the teacher sets. Each run trains in a spawned
process (``core.worker``) that streams its progress back up a pipe; the server process never trains,
so pages stay quick while runs train and a run's speed and result do not depend on how busy they are.
A worker that crashes or is killed becomes a failed job and its slot goes to the next run. Where the
workers run is a launcher's (``core.launch``): this machine's processes, or actors on a Ray cluster.

Every job (config, owner, status, curves, result) is kept in SQLite under the runs folder
(``core.jobstore``): a restart shows every past run, and the runs it cut short as interrupted, to be
resumed from their last finished epoch. Pages read immutable snapshots.
"""

from __future__ import annotations

import atexit
import hmac
import itertools
import math
import os
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from core import checkpoints, data, gan, launch, worker
from core.cost import architecture_size
from core.i18n import Message
from core.jobstore import FILE, JobStore
from core.models import get_card
from core.training import Progress, TrainConfig, clock
from core.zoo import TimingJob

Status = Literal["queued", "running", "stopping", "done", "stopped", "failed", "interrupted"]
FINISHED = ("done", "stopped", "failed", "interrupted")
JobConfig = TrainConfig | gan.GanConfig | TimingJob
KINDS: dict[str, type] = {"classifier": TrainConfig, "gan": gan.GanConfig, "timing": TimingJob}

TEACHER_ENV = "MNIST_LAB_TEACHER_KEY"  # the key that unlocks teacher mode; unset: no teacher mode


class LimitError(ValueError):
    """A student's run over a limit the teacher set; the message says the limit."""


@dataclass(frozen=True)
class Limits:
    """What one student may ask of the class's machine; the teacher's own runs are not limited."""

    queued_per_student: int = 2  # runs waiting in the queue at once
    epoch_images: int = 1_200_000  # epochs x training images of one run: every MNIST recipe as it is (20 epochs)

    def validate(self) -> None:
        if not 1 <= self.queued_per_student <= 100:
            raise ValueError(f"queued runs per student must be between 1 and 100, got {self.queued_per_student}")
        if not 1_000 <= self.epoch_images <= 100_000_000:
            raise ValueError(f"epochs x images must be between 1,000 and 100,000,000, got {self.epoch_images:,}")


def run_images(config: JobConfig) -> int:
    """Epochs x training images: the size of a run that the limits measure."""
    images = data.TRAIN_SIZE if config.limit is None else min(config.limit, data.TRAIN_SIZE)
    return config.epochs * images


@dataclass(frozen=True)
class Estimate:
    seconds: float
    basis: str  # what it was measured from, in words


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job at one moment, safe to read without the lock."""

    id: int
    name: str
    owner: str
    config: JobConfig
    status: Status
    position: int | None  # 1-based place in the queue while queued, in the order runs will start
    created: float
    started: float | None
    finished: float | None
    device: str
    phase: str  # what the worker is doing, for the status line: a Message while the server runs
    # per logging interval: global_step, epoch and loss, accuracy, lr (classifier) or d_loss, g_loss (GAN)
    steps: tuple[dict, ...]  # empty in a snapshot taken without history (JobManager.snapshots)
    epochs: tuple[dict, ...]  # per finished epoch: EpochEvent fields, or GanEpoch's with the grid; the same
    progress: float  # 0..1 of all planned batches
    samples_per_s: float
    eta_s: float | None
    last_step: dict | None  # the latest step event's fields (epoch, epochs, step, steps_per_epoch, ...)
    error: str | None
    result: dict | None  # when finished: summary, and the confusion matrix or the scores, saved file
    pid: int | None  # its worker process, while it runs on this machine

    @property
    def active(self) -> bool:
        return self.status not in FINISHED

    @property
    def kind(self) -> str:
        return kind_of(self.config)

    @property
    def is_gan(self) -> bool:
        return self.kind == "gan"

    @property
    def title(self) -> str:
        """What is being trained on what, e.g. "LeNet-5 on MNIST"."""
        if self.kind == "timing":
            n = len(self.config.architectures)
            return Message("titles.timing_one") if n == 1 else Message("titles.timing", n=n)
        trained = Message("titles.cgan") if self.is_gan else get_card(self.config.arch).title
        return Message("titles.run", trained=trained, dataset=data.get_spec(self.config.dataset).title)


def kind_of(config: JobConfig) -> str:
    """"classifier", "gan" or "timing"."""
    return next(kind for kind, config_type in KINDS.items() if isinstance(config, config_type))


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
    phase: str = field(default_factory=lambda: Message("phases.queued"))
    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    progress: float = 0.0
    samples_per_s: float = 0.0
    eta_s: float | None = None
    last_step: dict | None = None
    error: str | None = None
    result: dict | None = None
    resume: bool = False  # continue from the progress file of an interrupted run
    slot: str | None = None  # the device it holds a slot of while it runs
    stop_asked: bool = False
    run: launch.Run | None = None  # its worker, while it runs

    @property
    def kind(self) -> str:
        return kind_of(self.config)


_STORED = ("name", "owner", "status", "created", "started", "finished", "device", "phase", "progress",
           "samples_per_s", "eta_s", "last_step", "error", "result")
_PROGRESS_FIELDS = {f.name for f in fields(Progress)}  # what every step event has; the rest is what it measured


def fair_order(queued: Sequence[_Job], running: Iterable[_Job], history: Iterable[_Job]) -> list[_Job]:
    """The order queued jobs will start in: round-robin over their owners.

    Next is always the owner with the fewest runs training, then the one whose last run started longest
    ago (never: first), then the one who has waited longest; each owner's own runs keep their order. One
    student's eight runs therefore go in turn with everyone else's, not before them.
    """
    waiting: dict[str, deque[_Job]] = defaultdict(deque)
    for job in sorted(queued, key=lambda j: j.id):
        waiting[job.owner].append(job)
    training = Counter(job.owner for job in running)
    last_start = defaultdict(lambda: -math.inf)
    history = list(history)
    for job in history:
        if job.started is not None:
            last_start[job.owner] = max(last_start[job.owner], job.started)
    latest = max((job.started for job in history if job.started is not None), default=0.0)
    order, later = [], itertools.count(1)
    while waiting:
        owner = min(waiting, key=lambda o: (training[o], last_start[o], waiting[o][0].id))
        order.append(waiting[owner].popleft())
        if not waiting[owner]:
            del waiting[owner]
        training[owner] += 1
        last_start[owner] = latest + next(later)  # as if it started now, after every real start
    return order


class JobManager:
    """The class's training queue: worker processes in run slots, a fair queue, limits, a teacher.

    ``folder`` receives the saved runs and the jobs' database (default: ``checkpoints.runs_dir()``),
    never ``weights/``. ``launcher`` places the workers (default: ``launch.from_environment()``, this
    machine's processes unless ``MNIST_LAB_RAY`` names a Ray cluster); ``slots`` (place -> runs at once)
    defaults to the launcher's for ``device``; ``teacher_key`` to ``$MNIST_LAB_TEACHER_KEY``.
    """

    def __init__(
        self,
        *,
        device: str | None = None,
        data_root: str | None = None,
        folder: Path | None = None,
        log_every: int = 10,
        slots: dict[str, int] | None = None,
        teacher_key: str | None = None,
        launcher: launch.Launcher | None = None,
    ) -> None:
        self.data_root, self.log_every = data_root, log_every
        self.folder = folder or checkpoints.runs_dir()
        self.launcher = launcher or launch.from_environment()
        self.slots = slots or self.launcher.slots(device)
        self.teacher_key = os.environ.get(TEACHER_ENV, "") if teacher_key is None else teacher_key
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = False
        checkpoints.remove_leftovers(self.folder)  # what a server killed mid-save left behind
        self.store, self.store_problem = self._open_store()
        self._jobs: dict[int, _Job] = {}
        for row in self.store.load():
            self._jobs[row["id"]] = self._restored(row)
        self._limits = Limits(**(self.store.setting("limits") or {}))
        atexit.register(self.close)  # a server that stops ends its workers: their runs are "interrupted"
        threading.Thread(target=self._dispatch, name="training-queue", daemon=True).start()

    # --- what pages call --------------------------------------------------------------------

    def submit(self, config: JobConfig, *, name: str, owner: str, teacher_key: str | None = None) -> int:
        """Queue a run (a classifier or a GAN); returns its job id. Raises ValueError for a bad config or
        name, LimitError for a student's run over a limit."""
        config = replace(config, log_every=self.log_every)
        config.validate()
        name = checkpoints.check_name(name)
        checkpoints.check_writable(self.folder)  # refused now, not after the whole training
        with self._lock:
            if not (self.is_teacher(teacher_key) or isinstance(config, TimingJob)):
                self._check_limits(config, owner)  # under the lock: two quick clicks cannot both pass
            job = _Job(0, self._unique_name(name), owner, config)
            job.id = self.store.insert({"kind": job.kind, "config": config, **self._row(job, _STORED)})
            self._jobs[job.id] = job
            self._wake.notify()
        return job.id

    def stop(self, job_id: int, *, owner: str, teacher_key: str | None = None) -> bool:
        """Ask a job to stop; only its owner or the teacher may. A queued job is withdrawn, a running one
        stops before its next batch and keeps its best weights so far."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status in FINISHED or not (job.owner == owner or self.is_teacher(teacher_key)):
                return False
            job.stop_asked = True
            if job.run is not None:
                job.run.stop()
            if job.status == "queued":
                job.status, job.phase, job.finished = "stopped", Message("phases.withdrawn"), time.time()
            else:
                job.status, job.phase = "stopping", Message("phases.stopping")
            self._store(job, "status", "phase", "finished")
            return True

    def resume(self, job_id: int, *, owner: str, teacher_key: str | None = None) -> bool:
        """Queue an interrupted run again, to go on from its last finished epoch. Only its owner or the
        teacher may."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status != "interrupted" or not (job.owner == owner or self.is_teacher(teacher_key)):
                return False
            kept = len(job.epochs) if self._progress_file(job).exists() else 0
            job.epochs = job.epochs[:kept]
            job.steps = [s for s in job.steps if s["epoch"] <= kept]
            job.last_step = None
            job.status, job.phase, job.resume = "queued", Message("phases.resume_queued", epoch=kept), True
            job.started = job.finished = job.error = None
            job.progress = kept / job.config.epochs
            self.store.forget_after(job.id, kept)
            self._store(job, "status", "phase", "started", "finished", "error", "progress", "last_step")
            self._wake.notify()
            return True

    def delete_run(self, record: checkpoints.ModelRecord, *, owner: str, teacher_key: str | None = None) -> None:
        """Delete a saved run: a student their own, the teacher anyone's (ValueError otherwise)."""
        checkpoints.delete_run(record, owner=None if self.is_teacher(teacher_key) else owner)

    def is_teacher(self, key: str | None) -> bool:
        """Whether ``key`` is the teacher's; without $MNIST_LAB_TEACHER_KEY nobody is the teacher."""
        return bool(self.teacher_key and key) and hmac.compare_digest(key.encode(), self.teacher_key.encode())

    @property
    def limits(self) -> Limits:
        return self._limits

    def set_limits(self, limits: Limits, *, teacher_key: str | None) -> None:
        """The teacher changes what students may ask; kept with the jobs, so a restart keeps them."""
        if not self.is_teacher(teacher_key):
            raise PermissionError("only the teacher can change the limits")
        limits.validate()
        self.store.set_setting("limits", asdict(limits))
        self._limits = limits

    def estimate(self, config: JobConfig) -> Estimate | None:
        """How long a run would train on this server, from speeds measured here; None if nothing measured."""
        if isinstance(config, TimingJob):
            return None
        images = run_images(config) * (1 - getattr(config, "val_split", 0.0))
        kind = kind_of(config)
        with self._lock:
            measured = [j for j in self._jobs.values() if j.kind == kind and j.samples_per_s > 0 and j.device
                        and (kind == "gan" or j.config.arch == config.arch)]
        if measured:
            latest = max(measured, key=lambda j: j.started or 0)
            speed = latest.samples_per_s * self._relative_speed(latest.config, config)
            return Estimate(images / speed, Message("estimate.measured", name=latest.name, device=latest.device,
                                                    speed=latest.samples_per_s))
        shipped = [r for r in checkpoints.read_manifest(checkpoints.WEIGHTS_DIR)
                   if r.kind == ("generator" if kind == "gan" else "classifier") and r.seconds > 0
                   and (kind == "gan" or r.arch == config.arch)]
        if not shipped:
            return None
        record = shipped[0]
        trained = record.config.get("limit") or data.TRAIN_SIZE
        trained *= record.epochs * (1 - record.config.get("val_split", 0.0))
        saved = KINDS[kind](**{k: v for k, v in record.config.items() if k in {f.name for f in fields(KINDS[kind])}})
        speed = trained / record.seconds * self._relative_speed(saved, config)
        return Estimate(images / speed, Message("estimate.shipped", device=record.device, time=clock(record.seconds),
                                                epochs=record.epochs))

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

    def close(self) -> None:
        """End every worker; their runs are interrupted, to be resumed by the next server. Idempotent."""
        with self._lock:
            self._closing = True
            runs = [j.run for j in self._jobs.values() if j.run is not None]
            self._wake.notify_all()
        for run in runs:
            run.terminate()
        for run in runs:
            run.wait(10)

    # --- inside ----------------------------------------------------------------------------

    def _open_store(self) -> tuple[JobStore, str | None]:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            return JobStore(self.folder / FILE), None
        except Exception as error:  # noqa: BLE001 - any reason the file cannot be used: jobs are kept in memory
            return JobStore(None), (f"{self.folder / FILE}: cannot keep the jobs there ({error}); they are kept "
                                    "in memory until the server stops")

    def _restored(self, row: dict) -> _Job:
        """A job read back from the store; one that was training when the server stopped is interrupted."""
        config_type = KINDS[row["kind"]]
        known = {f.name for f in fields(config_type)}
        config = config_type(**{k: v for k, v in row["config"].items() if k in known})
        job = _Job(row["id"], row["name"], row["owner"], config,
                   **{k: row[k] for k in _STORED if k not in ("name", "owner")},
                   steps=row["steps"], epochs=row["epochs"])
        if job.status in ("running", "stopping"):
            done = len(job.epochs)
            job.status, job.finished = "interrupted", job.finished or time.time()
            job.phase = Message("phases.restarted", epoch=done)
            self.store.update(job.id, status=job.status, phase=job.phase, finished=job.finished)
        return job

    def _check_limits(self, config: JobConfig, owner: str) -> None:
        limits = self._limits
        size = run_images(config)
        if size > limits.epoch_images:
            raise LimitError(Message("limits.too_big", epochs=config.epochs, images=size // config.epochs, size=size,
                                     limit=limits.epoch_images))
        queued = sum(1 for j in self._jobs.values() if j.owner == owner and j.status == "queued")
        if queued >= limits.queued_per_student:
            raise LimitError(Message("limits.too_many", queued=queued))

    def _unique_name(self, name: str) -> str:
        taken = {job.name for job in self._jobs.values()}
        taken |= {r.name for r in checkpoints.read_manifest(self.folder)}
        candidates = itertools.chain([name], (f"{name}-{i}" for i in itertools.count(2)))
        return next(c for c in candidates if c not in taken)

    def _running(self) -> list[_Job]:
        return [j for j in self._jobs.values() if j.status in ("running", "stopping")]

    def _queue(self) -> list[_Job]:
        queued = [j for j in self._jobs.values() if j.status == "queued"]
        return fair_order(queued, self._running(), self._jobs.values())

    def _positions(self) -> dict[int, int]:
        """Each queued job's 1-based place in the queue."""
        return {job.id: place for place, job in enumerate(self._queue(), start=1)}

    def _snapshot(self, job: _Job, positions: dict[int, int], *, history: bool) -> JobSnapshot:
        return JobSnapshot(
            id=job.id, name=job.name, owner=job.owner, config=job.config, status=job.status,
            position=positions.get(job.id), created=job.created, started=job.started, finished=job.finished,
            device=job.device, phase=job.phase, steps=tuple(job.steps) if history else (),
            epochs=tuple(job.epochs) if history else (), progress=job.progress,
            samples_per_s=job.samples_per_s, eta_s=job.eta_s, last_step=job.last_step, error=job.error,
            result=job.result, pid=job.run.pid if job.run else None,
        )

    @staticmethod
    def _row(job: _Job, names: Iterable[str]) -> dict:
        return {name: getattr(job, name) for name in names}

    def _store(self, job: _Job, *names: str) -> None:
        self.store.update(job.id, **self._row(job, names))

    def _progress_file(self, job: _Job) -> Path:
        return self.folder / "jobs" / f"{job.id}.progress.safetensors"

    @staticmethod
    def _relative_speed(measured: JobConfig, wanted: JobConfig) -> float:
        """How much faster ``wanted`` trains than ``measured`` of the same kind: by their MACs per image."""
        if isinstance(wanted, gan.GanConfig) or (measured.arch, measured.width) == (wanted.arch, wanted.width):
            return 1.0
        return architecture_size(measured.arch, width=measured.width)[1] / architecture_size(
            wanted.arch, width=wanted.width)[1]

    # --- the queue and the workers ------------------------------------------------------------

    def _next_start(self) -> tuple[_Job, str] | None:
        """The next job and the device it goes to, or None while every slot is taken (or nothing waits)."""
        if self._closing:
            return None
        taking = Counter(job.slot for job in self._running())
        free = [d for d, n in self.slots.items() if taking[d] < n]
        queue = self._queue() if free else []
        if not queue:
            return None
        return queue[0], min(free, key=lambda d: (taking[d] / self.slots[d], d))  # the least busy device

    def _dispatch(self) -> None:
        while True:
            with self._wake:
                start = self._next_start()
                while start is None:
                    self._wake.wait()
                    start = self._next_start()
                job, device = start
                job.status, job.started, job.slot = "running", time.time(), device
                job.phase = Message("phases.starting")
                self._store(job, "status", "started", "phase")
            self._launch(job, device)

    def _launch(self, job: _Job, device: str) -> None:
        """Start a job's worker where the launcher puts it, and a thread that follows what it says."""
        request = worker.Request(
            job_id=job.id, name=job.name, owner=job.owner, config=job.config, folder=self.folder,
            progress_file=self._progress_file(job), resume=job.resume, device=device, data_root=self.data_root,
            threads=launch.worker_threads(device, self.slots))
        try:
            run = self.launcher.start(request)
        except OSError as error:  # a run that cannot start fails, and the queue goes on
            self._finish(job, ("failed", f"could not start a training process: {error}"), "")
            return
        with self._lock:
            job.run = run
            if job.stop_asked:
                run.stop()
        threading.Thread(target=self._follow, args=(job, run), name=f"follow-job-{job.id}", daemon=True).start()

    def _follow(self, job: _Job, run: launch.Run) -> None:
        outcome = None
        try:
            for kind, payload in run.messages():
                if kind in ("finished", "failed"):
                    outcome = (kind, payload)
                else:
                    self._heard(job, kind, payload)
        finally:
            self._finish(job, outcome, run.wait())

    def _heard(self, job: _Job, kind: str, payload) -> None:
        """One message of a running worker into its job record."""
        with self._lock:
            if kind == "step":
                measured = {k: v for k, v in payload.items() if k not in _PROGRESS_FIELDS}
                event = Progress(**{k: payload[k] for k in _PROGRESS_FIELDS})
                point = {"global_step": event.global_step, "epoch": event.epoch, **measured}
                job.steps.append(point)
                job.last_step = payload
                job.progress, job.samples_per_s, job.eta_s = event.progress, event.samples_per_s, event.eta_s
                self.store.add_step(job.id, point, **self._row(job, ("last_step", "progress", "samples_per_s",
                                                                       "eta_s")))
            elif kind == "epoch":
                job.epochs.append(payload)
                self.store.add_epoch(job.id, payload)
            elif kind == "progress":  # a timing job's
                job.progress, job.phase = payload["progress"], payload["phase"]
                self._store(job, "progress", "phase")
            elif kind == "device":
                job.device = payload
                self._store(job, "device")
            elif kind == "phase" and job.status != "stopping":
                job.phase = payload
                self._store(job, "phase")

    def _finish(self, job: _Job, outcome: tuple[str, object] | None, silent_end: str) -> None:
        """A job's end: its outcome, or ``silent_end`` (why its worker ended without one)."""
        with self._lock:
            if outcome is None and self._closing:
                job.status = "interrupted"
                job.phase = Message("phases.server_stopping", epoch=len(job.epochs))
            elif outcome is None or outcome[0] == "failed":
                job.status, job.phase = "failed", Message("phases.failed")
                job.error = silent_end if outcome is None else outcome[1]
            else:
                result = outcome[1]
                job.name, job.result = result["name"], result
                job.status = "stopped" if result["status"] == "stopped" else "done"
                job.phase = ((result.get("divergence") or Message("phases.saved")) if job.status == "done"
                             else Message(f"phases.stopped.{job.kind}"))
            job.finished, job.run = time.time(), None
            self._store(job, "name", "status", "phase", "error", "result", "finished")
            self._wake.notify_all()
