"""Jobs on a Ray cluster: each run an actor that Ray places on any node, with the share of a GPU it needs.

``MNIST_LAB_RAY=auto`` joins the cluster this machine is part of (``ray start --head`` here, or ``ray start
--address`` to a head elsewhere); ``MNIST_LAB_RAY=ray://host:10001`` connects to a cluster as a client. The
JobManager keeps its queue, fairness and limits as on one machine: only where a run trains changes.

A classroom-sized run asks for ``1 / GPU_SLOTS`` of a GPU (three share one, as on one machine) and one CPU; a
run over the classroom budget, or a timing job (whose figures must not share), asks for a whole GPU. On a
cluster without GPUs a run asks for ``MNIST_LAB_RAY_CPUS`` CPUs (default 1) and trains on that many threads.

The runs folder (``MNIST_LAB_RUNS``) and the data (``MNIST_LAB_DATA``) must be on storage that every node
mounts at the same path: a run saves its weights and its progress file there, the server reads them from
there, and a resumed run may continue on another node. A node that lacks the folder fails the run saying so.
The lab's code travels to the nodes as Ray's working directory (this checkout, without its runs and data).
"""

from __future__ import annotations

import os
import platform
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import replace

import ray

from core import checkpoints, data, worker, zoo
from core.cost import architecture_size
from core.jobs import JobConfig
from core.launch import GPU_SLOTS, RAY_ENV, Said, slots_setting
from core.spec import MAX_MACS
from core.training import TrainConfig

PLACE = "ray"  # the JobManager's one place: Ray chooses the node and the device
CPUS_ENV = "MNIST_LAB_RAY_CPUS"
POLL_S = 1.0  # how long one ask for news waits on the actor
_LEFT_BEHIND = [".git/", "runs/", "data/", "**/__pycache__/", ".pytest_cache/", ".ruff_cache/"]


def cpus_per_run() -> int:
    setting = os.environ.get(CPUS_ENV, "").strip() or "1"
    if not (setting.isdigit() and int(setting) >= 1):
        raise ValueError(f"{CPUS_ENV}={setting!r}: the CPUs of a run must be a whole number, at least 1")
    return int(setting)


def resources(config: JobConfig, *, gpus: bool) -> dict[str, float]:
    """What a run asks Ray for: see the module's text."""
    if not gpus:
        return {"num_cpus": cpus_per_run(), "num_gpus": 0}
    large = isinstance(config, zoo.TimingJob) or (
        isinstance(config, TrainConfig) and architecture_size(config.arch, width=config.width)[1] > MAX_MACS)
    return {"num_cpus": 1, "num_gpus": 1 if large else 1 / GPU_SLOTS}


@ray.remote
class _Worker:
    """One run, in an actor of its own; its methods run on threads of their own, so that a stop or an ask
    for news is heard while it trains."""

    def __init__(self) -> None:
        self._said: deque[Said] = deque()
        self._news = threading.Condition()
        self._control = worker.Control()

    def work(self, request: worker.Request) -> None:
        def send(kind: str, payload) -> None:
            with self._news:
                self._said.append((kind, payload))
                self._news.notify_all()

        if not request.folder.is_dir():
            send("failed", f"The runs folder {request.folder} is not on the Ray node {platform.node()}: put "
                           f"{checkpoints.RUNS_ENV} on storage that every node mounts at the same path.")
            return
        outcome = worker.run(request, send, self._control)
        if outcome is not None:
            send(*outcome)

    def news(self, timeout: float) -> list[Said]:
        """What the run said since the last ask, waiting up to ``timeout`` seconds for something."""
        with self._news:
            self._news.wait_for(lambda: self._said, timeout)
            said = list(self._said)
            self._said.clear()
        return said

    def stop(self) -> None:
        self._control.ask_to_stop()


class RayRun:
    """A run's actor, as the JobManager follows it."""

    pid = None  # a process of some node, not this machine's

    def __init__(self, actor, work) -> None:
        self._actor, self._work = actor, work
        self._why = "The Ray worker of this run ended without a word; the run is lost."

    def messages(self) -> Iterator[Said]:
        while True:
            try:
                said = ray.get(self._actor.news.remote(POLL_S))
            except ray.exceptions.RayError as error:  # its node went, or its process died (memory, a kill)
                self._why = (f"The Ray worker of this run died ({type(error).__name__}: "
                             f"{str(error).strip().splitlines()[0]}); the run is lost.")
                return
            for message in said:
                yield message
                if message[0] in ("finished", "failed"):
                    return
            if not said and ray.wait([self._work], timeout=0)[0]:
                return  # its work is over, and it said all it had: its server is going

    def stop(self) -> None:
        self._actor.stop.remote()

    def terminate(self) -> None:
        ray.kill(self._actor)

    def wait(self, timeout: float | None = None) -> str:
        ray.kill(self._actor)  # an actor lives, and holds its share of a GPU, until it is killed
        return self._why


class RayLauncher:
    """Runs as Ray actors. ``address``: "auto", a ``ray://`` address, or None for the Ray this process has
    already started (``ray.init``), as a test does."""

    def __init__(self, address: str | None = None) -> None:
        if ray.is_initialized():
            return
        try:
            ray.init(address=address, log_to_driver=False, runtime_env={
                "working_dir": str(checkpoints.REPO), "excludes": _LEFT_BEHIND})
        except ConnectionError as error:
            raise ConnectionError(
                f"{RAY_ENV}={address}: no Ray cluster answers there ({str(error).splitlines()[0]}). Start one "
                f"(`ray start --head` on this machine for auto), or unset {RAY_ENV} to train on this machine."
            ) from error

    @staticmethod
    def _gpus() -> float:
        return ray.cluster_resources().get("GPU", 0)

    def slots(self, device: str | None) -> dict[str, int]:
        """As many runs at once as the cluster holds: GPU_SLOTS a GPU, else its CPUs by a run's;
        ``MNIST_LAB_SLOTS`` sets the number."""
        setting = slots_setting()
        if setting:
            return {PLACE: setting}
        gpus = self._gpus()
        capacity = gpus * GPU_SLOTS if gpus else ray.cluster_resources().get("CPU", 1) // cpus_per_run()
        return {PLACE: max(1, int(capacity))}

    def start(self, request: worker.Request) -> RayRun:
        gpus = bool(self._gpus())
        need = resources(request.config, gpus=gpus)
        request = replace(request, device=None,  # the node's own: the GPU Ray gives the actor, else its CPU
                          threads=None if gpus else int(need["num_cpus"]),
                          data_root=str(data.data_root(request.data_root).resolve()))
        # The nodes resolve the lab's folders as the server does: built networks live with the runs.
        env = {key: value for key, value in os.environ.items() if key.startswith("MNIST_LAB_")}
        env |= {checkpoints.RUNS_ENV: str(checkpoints.runs_dir().resolve()), data.DATA_ENV: request.data_root}
        actor = _Worker.options(**need, max_concurrency=3, runtime_env={"env_vars": env}).remote()
        return RayRun(actor, actor.work.remote(request))
