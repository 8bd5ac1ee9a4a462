"""One training run in a process of its own: what a JobManager starts for each job, as
``python -m core.worker MESSAGES_FD CONTROL_FD`` (a fresh interpreter, never a fork of the server).

The process trains, saves and sends its progress up a pipe as ``(kind, payload)`` messages; it never
reads the queue or the pages, so a busy server cannot slow it or change its result, and a crash or an
out-of-memory kill takes down this process alone. Its last message is ``("finished", result)`` or
``("failed", message)``; a process that ends without either was killed, which the manager reports.
A server that goes away ends its runs, unsaved, at their next batch: the next server resumes them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from core import checkpoints, data, gan, metrics, zoo
from core.i18n import Message
from core.training import Callback, EpochEvent, StepEvent, TrainConfig, Trainer, TrainingError, describe_device


@dataclass(frozen=True)
class Request:
    """Everything a worker needs; it crosses to the new process pickled, down the control pipe."""

    job_id: int
    name: str
    owner: str
    config: TrainConfig | gan.GanConfig | zoo.TimingJob
    folder: Path  # where the run is saved
    progress_file: Path  # the checkpoint after each finished epoch, for resuming an interrupted run
    resume: bool  # continue from progress_file
    device: str | None
    data_root: str | None
    threads: int | None  # CPU threads for torch; None: its default


def failure_message(error: BaseException) -> str:
    """What a student can act on, for every way a run can fail."""
    if isinstance(error, (TrainingError, ValueError, checkpoints.CheckpointError, data.DatasetDamaged)):
        return error.args[0] if error.args and isinstance(error.args[0], Message) else str(error)
    if isinstance(error, data.DatasetNotFound):
        return f"The dataset is missing. {error}"
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return "Out of memory: choose a smaller batch size, or a smaller width."
    return f"Unexpected {type(error).__name__}: {error}"


class _Forward(Callback):
    """Sends either trainer's events up the pipe, and checkpoints the run after each finished epoch."""

    def __init__(self, send, progress_file: Path) -> None:
        self.send, self.progress_file = send, progress_file

    def on_start(self, trainer: Trainer | gan.GanTrainer) -> None:
        self.send("phase", Message("phases.training"))

    def on_step(self, trainer: Trainer | gan.GanTrainer, event: StepEvent | gan.GanStep) -> None:
        self.send("step", asdict(event))

    def on_epoch_end(self, trainer: Trainer | gan.GanTrainer, event: EpochEvent | gan.GanEpoch) -> None:
        # A GAN keeps an epoch that a stop cut short, for its weights; a resume starts that epoch again.
        if not (isinstance(trainer, gan.GanTrainer) and trainer.stopped):
            checkpoints.save_progress(trainer, self.progress_file)
        self.send("epoch", asdict(event))

    def on_evaluate(self, trainer: Trainer) -> None:
        self.send("phase", Message("phases.scoring"))


NICENESS = 10  # added to a worker's niceness: the pages and browsers go first


class ServerGone(Exception):
    """The server that started this run has ended; the run ends too, unsaved."""


class Control:
    """What a run hears from the server: a stop it asks for, and whether it is still there."""

    def __init__(self) -> None:
        self.trainer: Trainer | gan.GanTrainer | None = None
        self.stop_asked = self.server_gone = False

    def ask_to_stop(self, *, server_gone: bool = False) -> None:
        """End the run before its next batch: saved, or, when its server has gone, not."""
        self.server_gone = self.server_gone or server_gone
        self.stop_asked = True
        if self.trainer is not None:
            self.trainer.should_stop = True

    def listen(self, connection: Connection) -> None:
        """Hear a "stop" down ``connection``, or the server's end in the pipe's, on a thread of its own."""
        def listening() -> None:
            try:
                connection.recv()  # "stop"
            except (EOFError, OSError):
                self.ask_to_stop(server_gone=True)
            else:
                self.ask_to_stop()

        threading.Thread(target=listening, daemon=True).start()

    def attach(self, trainer: Trainer | gan.GanTrainer) -> None:
        """A stop asked for while the data loaded stops the run before its first batch."""
        self.trainer = trainer
        trainer.should_stop = self.stop_asked

    def fit(self, trainer: Trainer | gan.GanTrainer):
        self.attach(trainer)
        result = trainer.fit()
        if self.server_gone:
            raise ServerGone  # stopped because nobody waits for it: nothing to save
        return result


Outcome = tuple[str, object]  # ("finished", result) or ("failed", message)


def run(request: Request, send, control: Control) -> Outcome | None:
    """Train, save and report as ``request`` says, sending ``(kind, payload)`` messages through ``send``
    (which raises ServerGone when nobody listens). The outcome to send last, or None when the server went
    away: the next server shows the run as interrupted, and resumes it from its last epoch. The same for
    a worker process of this machine and for a Ray actor (``core.raylaunch``)."""
    if request.threads:
        torch.set_num_threads(request.threads)
    try:
        return "finished", _JOBS[type(request.config)](request, send, control)
    except ServerGone:
        return None
    except Exception as error:  # noqa: BLE001 - every failure becomes a failed job, said in words
        return "failed", failure_message(error)


def main(messages_fd: int, control_fd: int) -> None:
    """The worker process's whole life: read its Request, train, save, report, exit.

    ``control_fd`` brings the Request, then "stop"; ``messages_fd`` takes the progress and the outcome.
    """
    messages, connection = Connection(messages_fd, readable=False), Connection(control_fd, writable=False)
    request: Request = connection.recv()
    if hasattr(os, "nice"):
        # Below the server and the students' browsers: on a small machine a page that answers at once is
        # worth more than a run that ends a little sooner, and an idle machine gives the run everything.
        os.nice(NICENESS)
    control = Control()
    control.listen(connection)

    def send(kind: str, payload) -> None:
        if control.server_gone:
            raise ServerGone
        try:
            messages.send((kind, payload))
        except OSError as error:  # BrokenPipeError above all: nobody is listening
            raise ServerGone from error

    outcome = run(request, send, control)
    if outcome is not None:
        with contextlib.suppress(ServerGone):
            send(*outcome)
    messages.close()


def _train_classifier(request: Request, send, control: Control) -> dict:
    config = request.config
    trainer = Trainer(config, device=request.device, data_root=request.data_root,
                      callbacks=[_Forward(send, request.progress_file)])
    if request.resume and request.progress_file.exists():
        checkpoints.load_progress(trainer, request.progress_file)
    send("device", describe_device(trainer.device))
    result = control.fit(trainer)
    send("phase", Message("phases.saving"))
    summary = result.summary()
    record = checkpoints.save_classifier(result.model, name=request.name, arch=config.arch, dataset=config.dataset,
                                         summary=summary, folder=request.folder, owner=request.owner)
    request.progress_file.unlink(missing_ok=True)
    labels = trainer.test_split().labels.cpu()
    confusion = metrics.confusion_matrix(result.test.predictions, labels, len(data.get_spec(config.dataset).classes))
    # another program may have saved a run of that name meanwhile: the record's name is the one kept
    return {**summary, "name": record.name, "confusion": confusion.tolist(), "file": str(record.path)}


def _train_gan(request: Request, send, control: Control) -> dict:
    config = request.config
    trainer = gan.GanTrainer(config, device=request.device, data_root=request.data_root,
                             callbacks=[_Forward(send, request.progress_file)])
    if request.resume and request.progress_file.exists():
        checkpoints.load_progress(trainer, request.progress_file)
    send("device", describe_device(trainer.device))
    result = control.fit(trainer)
    send("phase", Message("phases.gan_scoring"))
    record = gan.save_generator(
        result, name=request.name, folder=request.folder, owner=request.owner,
        score=lambda generator: gan.score(generator, config.dataset, per_class=200, data_root=request.data_root))
    request.progress_file.unlink(missing_ok=True)
    return {**result.summary(), "name": record.name, "status": "stopped" if result.stopped else "done",
            "scores": record.metrics, "file": str(record.path)}


def _time_zoo(request: Request, send, control: Control) -> dict:
    def progress(done: int, total: int, what: str) -> None:
        if control.stop_asked:
            raise _Stopped
        send("progress", {"progress": done / max(total, 1), "phase": what})

    try:
        request.config.run(progress)
    except _Stopped:
        return {"name": request.name, "status": "stopped"}
    return {"name": request.name, "status": "done"}


class _Stopped(Exception):
    """A timing job asked to stop: the figures measured so far are not kept."""


_JOBS = {TrainConfig: _train_classifier, gan.GanConfig: _train_gan, zoo.TimingJob: _time_zoo}

if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
