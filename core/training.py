"""Training and evaluation of any registry architecture.

The Trainer never prints and keeps no global state: progress leaves through a Callback's
``on_*`` hooks, and a stop flag is checked before every batch. The command line, the Train page's
background jobs and the tests all drive this one loop.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from core import data
from core.models import get_card, get_model

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers, as in the paper
_SHIFTS_ONLY = dict(max_degrees=0.0, scale=(1.0, 1.0), whole_pixels=True)  # augmentation with warp off


@dataclass
class TrainConfig:
    arch: str = "lenet5-relu"
    dataset: str = "mnist"  # "mnist" or "fashion"
    epochs: int = 5  # passes over the training split (early stopping may end sooner)
    batch_size: int = 128
    lr: float = 1e-3  # the peak rate for one-cycle, the start for cosine
    optimizer: str = "adamw"  # sgd | adam | adamw
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    schedule: str = "onecycle"  # constant | cosine | onecycle, stepped every batch
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    augment: bool = True  # random shifts, and mirroring where the dataset allows it
    warp: bool = True  # with augment: rotations (up to 10 degrees), scales (0.9 to 1.1), fractional shifts
    erase: float = 0.0  # with augment: share of images with a random rectangle erased (random erasing)
    val_split: float = 0.1  # held out of the training split, seeded
    patience: int = 3  # epochs without a better validation loss before stopping; 0: never
    seed: int = 0
    limit: int | None = None  # train on the first N training images only
    width: float = 1.0  # channel multiplier of the architecture
    log_every: int = 20  # batches between progress events (and host syncs on a GPU)

    def matches(self, saved: dict) -> bool:
        """Whether a config saved in a manifest is this one."""
        # A setting added after a model was saved did then what its default does now.
        return {**asdict(TrainConfig()), **saved} == asdict(self)

    def validate(self) -> None:
        """Raise ValueError naming the first unusable setting."""
        get_card(self.arch)
        data.get_spec(self.dataset)
        checks = [
            ("epochs", self.epochs >= 1, "at least 1"),
            ("batch_size", 1 <= self.batch_size <= 8192, "between 1 and 8192"),
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a positive number"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("schedule", self.schedule in SCHEDULES, f"one of {SCHEDULES}"),
            ("weight_decay", 0 <= self.weight_decay < 1, "in [0, 1)"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("erase", 0 <= self.erase <= 1, "in [0, 1]"),
            ("val_split", 0 <= self.val_split <= 0.5, "between 0 and 0.5"),
            ("patience", self.patience >= 0, "0 (off) or more"),
            ("limit", self.limit is None or self.limit >= 10, "at least 10 images"),
            ("width", 0 < self.width <= 4, "in (0, 4]"),
            ("log_every", self.log_every >= 1, "at least 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")


class TrainingError(RuntimeError):
    """A run that cannot go on; the message says what to change."""


@dataclass
class Progress:
    """Where a run is and how fast it goes: what every step event has, the classifiers' and the GAN's."""

    epoch: int
    epochs: int
    step: int  # within the epoch, 1-based
    steps_per_epoch: int
    samples_per_s: float
    eta_s: float  # until the last epoch ends, at the current speed

    @property
    def global_step(self) -> int:
        return (self.epoch - 1) * self.steps_per_epoch + self.step

    @property
    def progress(self) -> float:
        return self.global_step / (self.epochs * self.steps_per_epoch)


@dataclass
class StepEvent(Progress):
    loss: float  # mean training loss since the previous event
    accuracy: float  # percent, since the previous event
    lr: float


@dataclass
class EpochEvent:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float  # percent
    val_loss: float | None  # None without a validation split
    val_accuracy: float | None
    lr: float
    seconds: float  # training time of this epoch
    improved: bool  # best validation accuracy so far (ties: lower loss): these weights are kept


class Callback:
    """Subscribe to a run's progress by overriding any of these no-op hooks."""

    def on_start(self, trainer: Trainer) -> None: ...

    def on_step(self, event: StepEvent) -> None: ...

    def on_epoch_end(self, event: EpochEvent) -> None: ...

    def on_evaluate(self) -> None:
        """Training is over and the test set is being scored."""


@dataclass
class Evaluation:
    loss: float
    accuracy: float  # percent
    predictions: torch.Tensor  # predicted class per image, on the CPU


Status = Literal["completed", "early-stopped", "stopped"]


@dataclass
class TrainResult:
    model: nn.Module  # holding the best weights (highest validation accuracy, then lowest loss)
    config: TrainConfig
    status: Status
    history: list[EpochEvent]
    test: Evaluation
    best_epoch: int
    seconds: float  # wall clock, data loading and evaluation included
    train_samples_per_s: float  # optimisation steps only
    device: str

    @property
    def test_accuracy(self) -> float:
        return self.test.accuracy

    def summary(self) -> dict:
        """The run as JSON-ready numbers (what `train --json` prints and the manifest keeps)."""
        return {
            "arch": self.config.arch,
            "dataset": self.config.dataset,
            "status": self.status,
            "test_accuracy": round(self.test.accuracy, 2),
            "test_loss": round(self.test.loss, 4),
            "best_epoch": self.best_epoch,
            "epochs": len(self.history),
            "seconds": round(self.seconds, 1),
            "train_samples_per_s": round(self.train_samples_per_s, 1),
            "device": self.device,
            "config": asdict(self.config),
            "history": [asdict(e) for e in self.history],
        }


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: the argument, else cuda, else mps, else cpu."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for, but this machine has no Apple GPU")
    return device


def describe_device(device: str | torch.device | None = None) -> str:
    """A short human name: 'NVIDIA H200 (139 GiB)' or 'CPU, 2 threads'."""
    device = resolve_device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "Apple GPU (mps)"
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'s' if threads > 1 else ''}"


def outputs_loss(outputs: torch.Tensor | tuple, labels: torch.Tensor, label_smoothing: float = 0.0):
    """Cross-entropy of the logits, plus the weighted auxiliary losses when a model returns them.

    Models with auxiliary heads (GoogLeNet in training) return a tuple whose first item is the
    main logits; this is the one place that knows it. Returns (loss, main logits).
    """
    if isinstance(outputs, tuple):
        logits, *aux = outputs
    else:
        logits, aux = outputs, []
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    for extra in aux:
        loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(extra.float(), labels, label_smoothing=label_smoothing)
    return loss, logits


def use_channels_last(device: torch.device) -> bool:
    """Convolutions run faster in channels-last layout on CUDA and, measured here, on the CPU too."""
    return device.type in ("cpu", "cuda")


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: data.Split,
    dataset: str,
    *,
    batch_size: int = 1000,
) -> Evaluation:
    """Mean loss, accuracy and predictions of a model on a split (in eval mode)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    predictions = []
    for images, labels in data.batches(split.to(device), batch_size, shuffle=False):
        x = data.normalize(images, dataset)
        if use_channels_last(device):
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
        predictions.append(logits.argmax(1))
    model.train(was_training)
    predicted = torch.cat(predictions).cpu()
    n = max(len(split), 1)
    accuracy = 100.0 * (predicted == split.labels.cpu()).sum().item() / n
    return Evaluation(loss_sum.item() / n, accuracy, predicted)


def _make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    # One fused kernel for all parameters: 3-4x faster steps than the per-tensor loop on the CPU here.
    common = dict(lr=config.lr, weight_decay=config.weight_decay, fused=device.type in ("cpu", "cuda") or None)
    if config.optimizer == "sgd":
        nesterov = config.nesterov and config.momentum > 0
        return torch.optim.SGD(model.parameters(), momentum=config.momentum, nesterov=nesterov, **common)
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), **common)
    return torch.optim.AdamW(model.parameters(), **common)


def _make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


StopFlag = Callable[[], bool]


class Trainer:
    """One training run: data on the device, model, optimizer and schedule, and the loop."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        device: str | torch.device | None = None,
        data_root: str | os.PathLike | None = None,
        callback: Callback | None = None,
        train_data: data.Split | None = None,
    ) -> None:
        """``train_data`` replaces the dataset's training split (e.g. generated digits); the test
        split is still the dataset's own."""
        config.validate()
        self.config = config
        self.device = resolve_device(device)
        self.data_root = data_root
        self.callback = callback or Callback()
        spec = data.get_spec(config.dataset)
        if train_data is None:
            full = data.load(config.dataset, train=True, root=data_root, device=self.device, limit=config.limit)
        else:
            full = train_data.subset(slice(0, config.limit)).to(self.device)
        self.train_split, self.val_split = data.split_validation(full, config.val_split, seed=config.seed)

        torch.manual_seed(config.seed)
        self.model = get_model(config.arch, num_classes=len(spec.classes), width=config.width).to(self.device)
        if use_channels_last(self.device):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = _make_optimizer(self.model, config, self.device)
        self.steps_per_epoch = math.ceil(len(self.train_split) / config.batch_size)
        self.schedule = _make_schedule(self.optimizer, config, config.epochs * self.steps_per_epoch)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.background = data.background(config.dataset)
        self.mirror = spec.mirror

        self.history: list[EpochEvent] = []
        # What "best" means: the highest validation accuracy, then the lower validation loss. Loss
        # alone misleads under label smoothing: the plain cross-entropy of a smoothed model bottoms
        # out early while its accuracy still climbs (LeNet-5-ReLU's recipe on MNIST: lowest loss at
        # epoch 7 of 15, 99.02 % on the test set; the last epoch, kept by this rule, 99.46 %).
        self.best_score = (math.inf, math.inf)
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.train_seconds = 0.0
        self.train_samples = 0

    def fit(self, stop: StopFlag | None = None) -> TrainResult:
        """Train up to ``config.epochs``, keep the best weights, then score the test set."""
        stop = stop or (lambda: False)
        started = time.perf_counter()
        self.callback.on_start(self)
        status: Status = "completed"
        try:
            for epoch in range(len(self.history) + 1, self.config.epochs + 1):
                if not self.train_epoch(epoch, stop):
                    status = "stopped"
                    break
                patience = self.config.patience
                if patience and len(self.history) - self.best_epoch >= patience:
                    status = "early-stopped"
                    break
        except torch.cuda.OutOfMemoryError as error:
            raise TrainingError(
                f"out of memory on {describe_device(self.device)} at batch size {self.config.batch_size}: "
                f"choose a smaller batch size, e.g. {max(1, self.config.batch_size // 2)}"
            ) from error
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.callback.on_evaluate()
        test = evaluate(self.model, self.test_split(), self.config.dataset)
        return TrainResult(
            model=self.model,
            config=self.config,
            status=status,
            history=list(self.history),
            test=test,
            best_epoch=self.best_epoch,
            seconds=time.perf_counter() - started,
            train_samples_per_s=self.train_samples / max(self.train_seconds, 1e-9),
            device=describe_device(self.device),
        )

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Everything needed to continue after the last finished epoch: tensors, and JSON-ready rest."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors |= {f"best.{k}": v for k, v in (self.best_state or {}).items()}
        optimizer = self.optimizer.state_dict()
        for index, state in optimizer["state"].items():
            tensors |= {f"optimizer.{index}.{k}": torch.as_tensor(v) for k, v in state.items()}
        tensors["rng.generator"] = self.generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()  # dropout draws from the global generator
        extras = {
            "config": asdict(self.config),
            "history": [asdict(e) for e in self.history],
            "param_groups": optimizer["param_groups"],
            "best_score": list(self.best_score),
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "train_samples": self.train_samples,
        }
        return tensors, extras

    def load_state_dict(self, tensors: dict[str, torch.Tensor], extras: dict) -> None:
        """Continue a run saved by ``state_dict``; its config must equal this trainer's."""
        if extras["config"] != asdict(self.config):
            raise ValueError("the saved run was made with another configuration")

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.model.load_state_dict(part("model."))
        self.best_state = {k: v.to(self.device) for k, v in part("best.").items()} or None
        state: dict[int, dict] = {}
        for key, value in part("optimizer.").items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": extras["param_groups"]})
        self.generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.torch"])
        self.history = [EpochEvent(**e) for e in extras["history"]]
        self.best_score, self.best_epoch = tuple(extras["best_score"]), extras["best_epoch"]
        self.train_seconds, self.train_samples = extras["train_seconds"], extras["train_samples"]
        # The schedule is a pure function of the step: replay it rather than store it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
            for _ in range(len(self.history) * self.steps_per_epoch):
                self.schedule.step()

    def test_split(self) -> data.Split:
        return data.load(self.config.dataset, train=False, root=self.data_root, device=self.device)

    def train_epoch(self, epoch: int, stop: StopFlag) -> bool:
        """One pass over the training split; False if stopped part-way (the epoch is discarded)."""
        config, model, device = self.config, self.model, self.device
        model.train()
        epoch_loss = torch.zeros((), device=device)
        epoch_correct = torch.zeros((), device=device, dtype=torch.long)
        interval_loss = torch.zeros((), device=device)
        interval_correct = torch.zeros((), device=device, dtype=torch.long)
        interval_seen = 0
        epoch_start = interval_start = time.perf_counter()
        batches = data.batches(self.train_split, config.batch_size, shuffle=True, generator=self.generator)
        for step, (images, labels) in enumerate(batches, start=1):
            if stop():
                self.train_seconds += time.perf_counter() - epoch_start
                return False
            x = data.normalize(images, config.dataset)
            if config.augment:
                x = data.augment(x, generator=self.generator, fill=self.background, mirror=self.mirror,
                                 **({} if config.warp else _SHIFTS_ONLY))
                if config.erase:  # drawn only when asked for: runs without erasing keep their random stream
                    x = data.erase(x, config.erase, generator=self.generator)
            if use_channels_last(device):
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                outputs = model(x)
            loss, logits = outputs_loss(outputs, labels, config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()

            n = len(labels)
            interval_loss += loss.detach() * n
            interval_correct += (logits.argmax(1) == labels).sum()
            interval_seen += n
            if step % config.log_every == 0 or step == self.steps_per_epoch:
                mean_loss = interval_loss.item() / interval_seen  # the one host sync per interval
                if not math.isfinite(mean_loss):
                    raise TrainingError(
                        f"training diverged at epoch {epoch}, step {step}: the loss became {mean_loss}. "
                        f"Lower the learning rate (it was {config.lr:g}; try {config.lr / 10:g} or less)."
                    )
                now = time.perf_counter()
                done = (epoch - 1) * self.steps_per_epoch + step
                seconds_per_step = (now - epoch_start) / step
                self.callback.on_step(StepEvent(
                    epoch=epoch, epochs=config.epochs, step=step, steps_per_epoch=self.steps_per_epoch,
                    loss=mean_loss,
                    accuracy=100.0 * interval_correct.item() / interval_seen,
                    lr=self.optimizer.param_groups[0]["lr"],
                    samples_per_s=interval_seen / max(now - interval_start, 1e-9),
                    eta_s=(config.epochs * self.steps_per_epoch - done) * seconds_per_step,
                ))
                epoch_loss += interval_loss
                epoch_correct += interval_correct
                interval_loss.zero_()
                interval_correct.zero_()
                interval_seen = 0
                interval_start = now
        seconds = time.perf_counter() - epoch_start
        self.train_seconds += seconds
        self.train_samples += len(self.train_split)

        train_loss = epoch_loss.item() / len(self.train_split)
        train_accuracy = 100.0 * epoch_correct.item() / len(self.train_split)
        if len(self.val_split):
            val = evaluate(model, self.val_split, config.dataset)
            val_loss, val_accuracy, score = val.loss, val.accuracy, (-val.accuracy, val.loss)
        else:
            val_loss = val_accuracy = None
            score = (-epoch, 0.0)  # without validation data the latest weights are the best we know
        improved = score < self.best_score
        if improved:
            self.best_score, self.best_epoch = score, epoch
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        event = EpochEvent(
            epoch=epoch, epochs=config.epochs, train_loss=train_loss, train_accuracy=train_accuracy,
            val_loss=val_loss, val_accuracy=val_accuracy, lr=self.optimizer.param_groups[0]["lr"],
            seconds=seconds, improved=improved,
        )
        self.history.append(event)
        self.callback.on_epoch_end(event)
        return True


def train(
    config: TrainConfig,
    *,
    device: str | torch.device | None = None,
    data_root: str | os.PathLike | None = None,
    callback: Callback | None = None,
    stop: StopFlag | None = None,
) -> TrainResult:
    """Build a Trainer and run it: the one-call form for scripts."""
    return Trainer(config, device=device, data_root=data_root, callback=callback).fit(stop)

