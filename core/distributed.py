"""One run across GPUs or machines with torchrun: DistributedDataParallel, as on one device but faster.

    torchrun --nproc_per_node=4 -m core train --arch vgg19 --epochs 5
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --nproc_per_node=8 -m core train --arch vgg19

Every rank holds the whole training split on its device, draws the same shuffled global batch from the same
generator, augments it the same way, and trains on its own share of it (rows ``rank::world``), so the batch
size and the learning rate mean what they mean on one device and the first epoch's loss is the same. Gradients
are averaged by DDP; each rank's loss is scaled so that the average is the global batch's mean, also when the
last batch does not split evenly. The interval's loss and accuracy are summed over the ranks, so every rank
takes the same decision on a diverging loss, and rank 0 alone logs, evaluates and saves; its decision to stop
early is broadcast. Batch norm is synchronised across ranks with ``--sync-bn`` (CUDA only); otherwise each
rank's batch norm sees its own share. A rank that dies ends the run: the others' next collective fails after
``MNIST_LAB_DIST_TIMEOUT`` seconds (default 300) instead of hanging, and the command says which rank failed.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

TIMEOUT_ENV = "MNIST_LAB_DIST_TIMEOUT"


class DistributedError(RuntimeError):
    """A run across ranks that cannot start or go on; the message says why and where."""


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    device: torch.device

    @property
    def leader(self) -> bool:
        """Rank 0: the one that logs, evaluates and saves."""
        return self.rank == 0

    def share(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's rows of a global batch: every ``size``-th, from its rank."""
        return tuple(t[self.rank::self.size] for t in tensors)

    def total(self, *values: torch.Tensor | float) -> list[float]:
        """The sums over every rank of these numbers (one collective for all of them)."""
        summed = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(summed)
        return summed.tolist()

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag``, on every rank."""
        said = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(said, src=0)
        return bool(said.item())

    def wrap(self, model: nn.Module, *, sync_bn: bool) -> nn.Module:
        """``model`` as DDP trains it; its parameters stay ``model``'s own (evaluate and save ``model``)."""
        if sync_bn:
            if self.device.type != "cuda":
                raise DistributedError("--sync-bn needs CUDA (NCCL): on the CPU each rank's batch norm keeps "
                                       "its own share's statistics; leave --sync-bn out")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def launched() -> bool:
    """Whether this process is one rank of a torchrun run of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def timeout() -> datetime.timedelta:
    setting = os.environ.get(TIMEOUT_ENV, "").strip() or "300"
    if not (setting.isdigit() and int(setting) >= 1):
        raise DistributedError(f"{TIMEOUT_ENV}={setting!r}: seconds to wait for another rank, a whole number")
    return datetime.timedelta(seconds=int(setting))


def join(device: str | None = None) -> World:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on the CPU); each rank on GPU
    ``LOCAL_RANK`` where there are GPUs."""
    rank, size, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if device in (None, "auto", "cuda") and torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            raise DistributedError(f"rank {rank} is local rank {local}, but this machine has "
                                   f"{torch.cuda.device_count()} GPU(s): lower --nproc_per_node")
        where = torch.device("cuda", local)
        torch.cuda.set_device(where)
    elif device in (None, "auto", "cpu"):
        where = torch.device("cpu")
    else:
        raise DistributedError(f"--device {device}: a run across ranks trains on CUDA or the CPU")
    dist.init_process_group("nccl" if where.type == "cuda" else "gloo", timeout=timeout(),
                            **({"device_id": where} if where.type == "cuda" else {}))
    return World(rank, size, where)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
