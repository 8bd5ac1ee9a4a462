"""One run across processes with torchrun: two gloo ranks on the CPU train as one process does, rank 0 alone
writes, and a rank that dies ends the run with a message instead of a hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from core import checkpoints, distributed
from core.__main__ import main

REPO = Path(__file__).resolve().parent.parent
RUN = ["-m", "core", "train", "--arch", "lenet5", "--limit", "2000", "--epochs", "1", "--json"]


def environment(runs: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, checkpoints.RUNS_ENV: str(runs), "OMP_NUM_THREADS": "1", **extra}


def test_two_ranks_train_as_one_process_and_rank_0_alone_writes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    alone = subprocess.run([sys.executable, *RUN], cwd=REPO, env=environment(one), capture_output=True, text=True,
                           timeout=300)
    assert alone.returncode == 0, alone.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]
    ranks = subprocess.run([*torchrun, *RUN], cwd=REPO, env=environment(two), capture_output=True, text=True,
                           timeout=300)
    assert ranks.returncode == 0, ranks.stderr
    single, shared = json.loads(alone.stdout), json.loads(ranks.stdout)  # one document: rank 0's
    assert shared["ranks"] == 2
    # Each rank trains on its half of every global batch of the same shuffle: the same loss, to rounding.
    assert shared["history"][0]["train_loss"] == pytest.approx(single["history"][0]["train_loss"], rel=1e-4)
    assert shared["test_accuracy"] == pytest.approx(single["test_accuracy"], abs=0.1)
    assert sorted(p.name for p in (two / "mnist").iterdir()) == ["lenet5.safetensors"]
    assert len(checkpoints.read_manifest(two)) == 1


def test_a_rank_that_dies_ends_the_others_with_a_message_not_a_hang(tmp_path):
    """Without torchrun's agent to end them (ranks on other machines), the survivors' next collective fails."""
    def rank(number: int) -> subprocess.Popen:
        env = environment(tmp_path, RANK=str(number), LOCAL_RANK=str(number), WORLD_SIZE="2",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT="29519", **{distributed.TIMEOUT_ENV: "30"})
        return subprocess.Popen([sys.executable, "-m", "core", "train", "--arch", "lenet5", "--epochs", "30",
                                 "--limit", "20000"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    leader, other = rank(0), rank(1)
    try:
        for line in leader.stdout:  # rank 0 logs; once it has, both train
            if line.startswith("epoch 1/30 "):
                break
        leader.send_signal(signal.SIGKILL)
        started = time.monotonic()
        _, said = other.communicate(timeout=120)
        assert other.returncode == 2 and time.monotonic() - started < 60
        assert "rank 1 of 2: the run across ranks broke off" in said and "Traceback" not in said
    finally:
        for process in (leader, other):
            process.kill()
            process.wait()


def test_a_rank_takes_every_nth_row_of_the_global_batch():
    world = distributed.World(rank=1, size=3, device=torch.device("cpu"))
    images, labels = torch.arange(7).view(7, 1), torch.arange(7)
    shared_images, shared_labels = world.share(images, labels)
    assert shared_labels.tolist() == [1, 4] and shared_images.view(-1).tolist() == [1, 4]


def test_synced_batch_norm_needs_cuda_and_torchrun(capsys):
    world = distributed.World(rank=0, size=2, device=torch.device("cpu"))
    with pytest.raises(distributed.DistributedError, match="--sync-bn needs CUDA"):
        world.wrap(nn.BatchNorm2d(3), sync_bn=True)
    assert main(["train", "--arch", "lenet5", "--sync-bn"]) == 2
    assert "start it with torchrun" in capsys.readouterr().err
