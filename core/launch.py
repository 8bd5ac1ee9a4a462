"""Where a job's worker runs: a process of this machine (the default), or a Ray actor on any node of a cluster.

A JobManager keeps the queue, its fairness and its limits whatever the place; a launcher only starts a
``worker.Request`` and hands back a ``Run``: the worker's messages, a way to ask it to stop within a batch, and
its end. ``MNIST_LAB_RAY`` chooses: unset, this machine; ``auto``, the Ray cluster this machine is part of;
``ray://host:10001``, a cluster's client address (``core.raylaunch``, which needs ``pip install -r
requirements-ray.txt``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Protocol

import torch

from core import checkpoints, worker
from core.training import resolve_device

RAY_ENV = "MNIST_LAB_RAY"
SLOTS_ENV = "MNIST_LAB_SLOTS"  # runs at once per device
THREADS_ENV = "MNIST_LAB_THREADS"  # torch threads of a run on the CPU; unset: the cores but one, between slots
GPU_SLOTS = 3  # small classroom runs leave a GPU mostly idle; three share one well

Said = tuple[str, object]  # (kind, payload): what a worker sends


class Run(Protocol):
    """One worker at work."""

    pid: int | None  # its process, where it is one of this machine's

    def messages(self) -> Iterator[Said]:
        """What the worker says, in order, until its outcome or its end."""

    def stop(self) -> None:
        """Ask the run to stop before its next batch, keeping its best weights."""

    def terminate(self) -> None:
        """End the worker now (the server is stopping): its run is interrupted, to be resumed."""

    def wait(self, timeout: float | None = None) -> str:
        """Wait for the worker's end; why it ended, in words, for a run that ended without an outcome."""


class Launcher(Protocol):
    def slots(self, device: str | None) -> dict[str, int]:
        """Where runs go and how many at once: the places a JobManager fills round-robin."""

    def start(self, request: worker.Request) -> Run:
        """Start a worker for ``request``; OSError (or a subclass) if it cannot start."""


def slots_setting() -> int | None:
    """``MNIST_LAB_SLOTS``, the runs at once a place takes; None where it is not set."""
    setting = os.environ.get(SLOTS_ENV, "").strip()
    if setting and not (setting.isdigit() and 1 <= int(setting) <= 64):
        raise ValueError(f"{SLOTS_ENV}={setting!r}: runs at once per device must be a whole number from 1 to 64")
    return int(setting) if setting else None


def device_slots(device: str | None = None) -> dict[str, int]:
    """Run slots per device: ``MNIST_LAB_SLOTS`` each, else one on a CPU (a run takes the cores but one) and
    GPU_SLOTS on each GPU. ``device`` pins one device, as the trainers' own argument does."""
    setting = slots_setting()
    if device is None and torch.cuda.is_available():
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        devices = [str(resolve_device(device))]
    return {d: setting or (GPU_SLOTS if d.startswith("cuda") else 1) for d in devices}


def worker_threads(device: str, slots: dict[str, int]) -> int | None:
    """The torch threads a run's worker gets on ``device``: on the CPU ``MNIST_LAB_THREADS``, else its
    share of the cores but one, which is the pages'; None leaves torch's own count (a GPU's runs).

    A run's threads wait for each other at every operation, so one of them held off its core by the
    pages or a browser holds up the others: on 2 cores with 6 tabs watching, a LeNet-5 run with 2
    threads trained at 2-146 % of its solo speed (0.49 median), with 1 thread at 91-114 %, and faster
    than with 2 in absolute terms (3,900-4,600 images/s against 2,600-3,400).
    """
    if device != "cpu":
        return None
    setting = os.environ.get(THREADS_ENV, "").strip()
    if setting:
        if not (setting.isdigit() and int(setting) >= 1):
            raise ValueError(f"{THREADS_ENV}={setting!r}: a run's threads must be a whole number, at least 1")
        return int(setting)
    return max(1, ((os.cpu_count() or 1) - 1) // slots.get(device, 1))


def _killed(exitcode: int | None) -> str:
    """Why a worker ended without a word, for its failed job."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        why = " (most likely the machine ran out of memory)" if exitcode == -signal.SIGKILL else ""
        return (f"The training process was killed by {name}{why}; the run is lost. Try a smaller batch size "
                "or width, or fewer runs at once.")
    return f"The training process ended unexpectedly (exit code {exitcode}); the run is lost."


class LocalRun:
    """A worker process of this machine, and the two pipes between it and the server."""

    def __init__(self, process: subprocess.Popen, messages: Connection, control: Connection) -> None:
        self.process, self._messages, self._control = process, messages, control
        self.pid = process.pid

    def messages(self) -> Iterator[Said]:
        try:
            while True:
                try:
                    yield self._messages.recv()
                except (EOFError, OSError):
                    return
        finally:
            self._messages.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # a worker that has just ended needs no stop
            self._control.send("stop")

    def terminate(self) -> None:
        self.process.terminate()

    def wait(self, timeout: float | None = None) -> str:
        try:
            exitcode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:  # deaf to SIGTERM: killed
            self.process.kill()
            exitcode = self.process.wait()
        self._control.close()
        return _killed(exitcode)


class LocalLauncher:
    """Each run in a process of this machine: ``python -m core.worker``, a fresh interpreter, for a fork would
    copy the server's threads, locks and CUDA state."""

    def slots(self, device: str | None) -> dict[str, int]:
        return device_slots(device)

    def start(self, request: worker.Request) -> LocalRun:
        messages_read, messages_write = os.pipe()
        control_read, control_write = os.pipe()
        try:
            request.progress_file.parent.mkdir(parents=True, exist_ok=True)
            process = subprocess.Popen([sys.executable, "-m", "core.worker", str(messages_write), str(control_read)],
                                       cwd=checkpoints.REPO, pass_fds=(messages_write, control_read))
        except OSError:
            for fd in (messages_read, control_write):
                os.close(fd)
            raise
        finally:
            os.close(messages_write)  # the worker holds the only writing end: when it ends, ours reads EOF
            os.close(control_read)
        control = Connection(control_write, readable=False)
        control.send(request)
        return LocalRun(process, Connection(messages_read, writable=False), control)


def from_environment() -> Launcher:
    """The launcher ``MNIST_LAB_RAY`` asks for; this machine's when it is unset."""
    address = os.environ.get(RAY_ENV, "").strip()
    if not address:
        return LocalLauncher()
    from core.raylaunch import RayLauncher  # only a Ray cluster's lab needs Ray installed

    return RayLauncher(address)
