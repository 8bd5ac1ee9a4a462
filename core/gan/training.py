"""Training the conditional GAN: the two-player loop, its configuration and what it reports.

Images are scaled to [-1, 1] to match G's tanh; every fake batch draws its labels uniformly from all
classes, so no class is left out; the loss is the non-saturating one with Adam (2e-4, beta1 0.5), as
in the DCGAN paper. GanTrainer reports through the classifiers' Callback hooks and stops on
``should_stop`` as their Trainer does, and draws every random number from generators of its own.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core import data
from core.gan.sampling import make_grid, sample_with, to_pixels
from core.models._utils import build_seeded
from core.models.cgan import LATENT, MAX_WIDTH, Discriminator, Generator, init_weights
from core.training import Callback, Progress, TrainingError, describe_device, report_every, resolve_device


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 (N x 28 x 28) -> float N x 1 x 28 x 28 in [-1, 1], the range of G's tanh."""
    return images.unsqueeze(1).float().div(127.5).sub(1)


@dataclass
class GanConfig:
    dataset: str = "mnist"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-4  # Adam, for both players (DCGAN)
    beta1: float = 0.5  # a lower momentum keeps the two-player game stable (DCGAN)
    width: int = 64  # channels of the first conv of D and the last of G
    seed: int = 0
    limit: int | None = None  # train on the first N images only
    log_every: int = 20  # batches between step reports (each one waits for the losses)

    def validate(self) -> None:
        data.get_spec(self.dataset)
        for name, ok, expected in [
            ("epochs", self.epochs >= 1, "at least 1"), ("batch_size", 2 <= self.batch_size <= 4096, "2 to 4096"),
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a positive number"),
            ("beta1", 0 <= self.beta1 < 1, "in [0, 1)"),
            ("width", 1 <= self.width <= MAX_WIDTH, f"1 to {MAX_WIDTH}"),
            ("limit", self.limit is None or self.limit >= 10, "at least 10 images"),
            ("log_every", self.log_every >= 1, "at least 1"),
        ]:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")


@dataclass
class GanStep(Progress):
    d_loss: float  # mean since the previous report
    g_loss: float


@dataclass
class GanEpoch:
    epoch: int
    epochs: int
    d_loss: float
    g_loss: float
    seconds: float
    grid: np.ndarray  # the fixed-noise 10x10 grid after this epoch: rows one z each, columns the classes


@dataclass
class GanResult:
    generator: Generator
    config: GanConfig
    history: list[GanEpoch]
    seconds: float
    device: str
    stopped: bool

    def summary(self) -> dict:
        return {"dataset": self.config.dataset, "epochs": len(self.history), "seconds": round(self.seconds, 1),
                "device": self.device, "stopped": self.stopped, "config": asdict(self.config),
                "history": [{"epoch": e.epoch, "d_loss": e.d_loss, "g_loss": e.g_loss, "seconds": e.seconds}
                            for e in self.history]}


class GanTrainer:
    """One GAN run: the data on the device, both players and their optimizers, and the loop.

    ``callbacks`` get ``on_start(trainer)``, ``on_step(trainer, GanStep)`` every ``log_every``
    batches and at each epoch's end, and ``on_epoch_end(trainer, GanEpoch)`` with the losses and the
    fixed-noise grid. Setting ``should_stop`` (from a callback or another thread) ends the run before its
    next batch; an epoch cut short still counts, so the generator so far is kept.
    """

    def __init__(
        self,
        config: GanConfig,
        *,
        device: str | torch.device | None = None,
        data_root: str | os.PathLike | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        config.validate()
        self.config = config
        self.device = resolve_device(device)
        self.callbacks = list(callbacks)
        self.should_stop = False  # set before fit, the run stops before its first batch
        self.stopped = False  # whether should_stop ended the run before its last epoch was done
        self.real = data.load(config.dataset, train=True, root=data_root, device=self.device, limit=config.limit)
        self.classes = len(data.get_spec(config.dataset).classes)
        # The initial weights depend on the seed alone: the draws of seeding torch's global generator and
        # building both players, but from a generator that no other thread seeds or draws from (issue 14).
        init_rng = torch.Generator().manual_seed(config.seed)
        generator = build_seeded(lambda: Generator(num_classes=self.classes, width=config.width), init_rng)
        discriminator = build_seeded(lambda: Discriminator(num_classes=self.classes, width=config.width), init_rng)
        init_weights(generator, init_rng)
        init_weights(discriminator, init_rng)
        self.generator, self.discriminator = generator.to(self.device), discriminator.to(self.device)
        betas = (config.beta1, 0.999)
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=betas)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=betas)
        self.rng = torch.Generator().manual_seed(config.seed)  # noise, fake labels and shuffling, on the CPU
        self.fixed_z = torch.randn(10, LATENT, generator=self.rng).repeat_interleave(self.classes, 0).to(self.device)
        self.fixed_labels = torch.arange(self.classes).repeat(10).to(self.device)
        self.steps_per_epoch = math.ceil(len(self.real) / config.batch_size)
        self.log_every = report_every(config.log_every, config.epochs * self.steps_per_epoch)
        self.history: list[GanEpoch] = []

    def fit(self) -> GanResult:
        """Train G and D against each other for up to ``config.epochs``, from the last finished one."""
        started = time.perf_counter() - sum(e.seconds for e in self.history)
        for callback in self.callbacks:
            callback.on_start(self)
        for epoch in range(len(self.history) + 1, self.config.epochs + 1):
            record = self.train_epoch(epoch)
            if record is None:  # stopped before this epoch's first batch
                break
            self.history.append(record)
            for callback in self.callbacks:
                callback.on_epoch_end(self, record)
            if self.stopped:
                break
        return GanResult(self.generator.eval(), self.config, list(self.history), time.perf_counter() - started,
                         describe_device(self.device), self.stopped)

    def state_dict(self) -> tuple[dict[str, Tensor], dict]:
        """Everything needed to continue after the last finished epoch: tensors, and JSON-ready rest."""
        tensors: dict[str, Tensor] = {}
        extras: dict = {"config": asdict(self.config), "param_groups": {}}
        for player, model, optimizer in self._players():
            tensors |= {f"{player}.{k}": v for k, v in model.state_dict().items()}
            state = optimizer.state_dict()
            for index, moments in state["state"].items():
                tensors |= {f"{player}_optimizer.{index}.{k}": torch.as_tensor(v) for k, v in moments.items()}
            extras["param_groups"][player] = state["param_groups"]
        tensors["rng"] = self.rng.get_state()
        tensors |= {f"grid.{e.epoch}": torch.from_numpy(e.grid) for e in self.history}
        extras["history"] = [{k: v for k, v in asdict(e).items() if k != "grid"} for e in self.history]
        return tensors, extras

    def load_state_dict(self, tensors: dict[str, Tensor], extras: dict) -> None:
        """Continue a run saved by ``state_dict``; its config must equal this trainer's."""
        if extras["config"] != asdict(self.config):
            raise ValueError("the saved run was made with another configuration")
        for player, model, optimizer in self._players():
            model.load_state_dict({k[len(player) + 1:]: v for k, v in tensors.items() if k.startswith(f"{player}.")})
            state: dict[int, dict] = {}
            for key, value in tensors.items():
                if key.startswith(f"{player}_optimizer."):
                    index, name = key[len(player) + len("_optimizer."):].split(".", 1)
                    state.setdefault(int(index), {})[name] = value  # moved to its parameter's device there
            optimizer.load_state_dict({"state": state, "param_groups": extras["param_groups"][player]})
        self.rng.set_state(tensors["rng"])
        self.history = [GanEpoch(**e, grid=tensors[f"grid.{e['epoch']}"].numpy()) for e in extras["history"]]

    def _players(self) -> list[tuple[str, torch.nn.Module, torch.optim.Optimizer]]:
        return [("generator", self.generator, self.g_optimizer),
                ("discriminator", self.discriminator, self.d_optimizer)]

    def train_epoch(self, epoch: int) -> GanEpoch | None:
        """One pass over the data; None if stopped before its first batch."""
        config, device, classes, steps = self.config, self.device, self.classes, self.steps_per_epoch
        generator, discriminator, rng = self.generator, self.discriminator, self.rng
        generator.train()
        discriminator.train()
        epoch_start = time.perf_counter()
        d_total, g_total, done = torch.zeros((), device=device), torch.zeros((), device=device), 0
        d_since, g_since, reported = 0.0, 0.0, 0
        for images, labels in data.batches(self.real, config.batch_size, shuffle=True, generator=rng):
            if self.should_stop:
                self.stopped = True
                break
            n = len(labels)
            x = to_unit_range(images)
            fake_labels = torch.randint(classes, (n,), generator=rng).to(device)
            fake = generator(torch.randn(n, LATENT, generator=rng).to(device), fake_labels)

            # D: real digits of their class are real, generated ones of theirs are fake.
            d_loss = (F.binary_cross_entropy_with_logits(discriminator(x, labels), torch.ones(n, device=device))
                      + F.binary_cross_entropy_with_logits(discriminator(fake.detach(), fake_labels),
                                                           torch.zeros(n, device=device)))
            self.d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_optimizer.step()

            # G, non-saturating: make D call the fakes real.
            g_loss = F.binary_cross_entropy_with_logits(discriminator(fake, fake_labels), torch.ones(n, device=device))
            self.g_optimizer.zero_grad(set_to_none=True)
            g_loss.backward()
            self.g_optimizer.step()

            d_total += d_loss.detach()
            g_total += g_loss.detach()
            done += 1
            if self.callbacks and (done % self.log_every == 0 or done == steps):
                d_now, g_now = d_total.item(), g_total.item()  # waits for the device, so not every batch
                elapsed = time.perf_counter() - epoch_start
                left = (config.epochs - epoch) * steps + steps - done
                step = GanStep(epoch=epoch, epochs=config.epochs, step=done, steps_per_epoch=steps,
                               samples_per_s=done * config.batch_size / elapsed, eta_s=left * elapsed / done,
                               d_loss=(d_now - d_since) / (done - reported),
                               g_loss=(g_now - g_since) / (done - reported))
                for callback in self.callbacks:
                    callback.on_step(self, step)
                d_since, g_since, reported = d_now, g_now, done
        if done == 0:
            return None
        grid = make_grid(to_pixels(sample_with(generator, self.fixed_z, self.fixed_labels)).cpu().numpy(),
                         columns=classes)
        record = GanEpoch(epoch, config.epochs, d_total.item() / done, g_total.item() / done,
                          time.perf_counter() - epoch_start, grid)
        if not (math.isfinite(record.d_loss) and math.isfinite(record.g_loss)):
            raise TrainingError(f"the GAN diverged in epoch {epoch}: lower the learning rate (it was {config.lr:g})")
        return record


def train_gan(
    config: GanConfig,
    *,
    device: str | torch.device | None = None,
    data_root: str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
) -> GanResult:
    """Build a GanTrainer and run it: the one-call form for scripts."""
    return GanTrainer(config, device=device, data_root=data_root, callbacks=callbacks).fit()


def epoch_seconds(*, device: str | torch.device | None = None, dataset: str = "mnist",
                  data_root: str | None = None, limit: int | None = None) -> float:
    """How long one epoch of the default recipe takes (the whole training set, or its first ``limit``
    images), for ``bench``."""
    config = GanConfig(dataset=dataset, epochs=1, limit=limit)
    return train_gan(config, device=device, data_root=data_root).history[0].seconds
