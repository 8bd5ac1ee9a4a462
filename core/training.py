"""Training and evaluation of any registry architecture.

The Trainer never prints and keeps no global state. Progress leaves through its callbacks' ``on_*``
hooks (the GAN's trainer calls the same hooks); a callback, or the job queue's stop button, stops a run
by setting ``trainer.should_stop``, which is checked before every batch. Its random numbers (initial
weights, shuffling, augmentation, dropout) come from generators of its own, seeded by the config, so
that other threads drawing from torch's global generator cannot change a run (issue 14). The command
line, the Train page's background jobs and the tests all drive this one loop.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from core import data, paper
from core.i18n import Message
from core.models import MAX_WIDTH, MIN_WIDTH, get_card, get_model, use_dropout_generator

if TYPE_CHECKING:
    from core.distributed import World
    from core.gan.training import GanEpoch, GanStep, GanTrainer

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers, as in the paper
EVAL_BATCH = 1000  # images per batch when scoring a split
# A mean training or validation loss this many times that of a uniform guess (ln of the number of classes)
# is a run that has diverged: no healthy run comes near it (MLP at lr 1 with AdamW reached 81, then 8975,
# and ended at chance; the recipes start at 2.3 and fall).
EXPLODED = 10
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
    resolution: int = paper.ZOO  # the side the network sees: the lab's 28, or its paper's input (core.paper)
    log_every: int = 20  # batches between progress events (and host syncs on a GPU)

    def matches(self, saved: dict) -> bool:
        """Whether a config saved in a manifest is this one."""
        # A setting added after a model was saved did then what its default does now.
        return {**asdict(TrainConfig()), **saved} == asdict(self)

    def validate(self) -> None:
        """Raise ValueError naming the first unusable setting."""
        get_card(self.arch)
        data.get_spec(self.dataset)
        expected = "settings.expected."
        checks = [
            ("epochs", self.epochs >= 1, Message(expected + "at_least_one")),
            ("batch_size", 1 <= self.batch_size <= 8192, Message(expected + "batch_size")),
            ("lr", math.isfinite(self.lr) and self.lr > 0, Message(expected + "positive")),
            ("optimizer", self.optimizer in OPTIMIZERS, Message(expected + "one_of", choices=OPTIMIZERS)),
            ("momentum", 0 <= self.momentum < 1, Message(expected + "below_one")),
            ("schedule", self.schedule in SCHEDULES, Message(expected + "one_of", choices=SCHEDULES)),
            ("weight_decay", 0 <= self.weight_decay < 1, Message(expected + "below_one")),
            ("label_smoothing", 0 <= self.label_smoothing < 1, Message(expected + "below_one")),
            ("erase", 0 <= self.erase <= 1, Message(expected + "zero_to_one")),
            ("val_split", 0 <= self.val_split <= 0.5, Message(expected + "val_split")),
            ("patience", self.patience >= 0, Message(expected + "patience")),
            ("limit", self.limit is None or self.limit >= 10, Message(expected + "limit")),
            ("width", MIN_WIDTH <= self.width <= MAX_WIDTH, Message(expected + "width", low=MIN_WIDTH, high=MAX_WIDTH)),
            ("log_every", self.log_every >= 1, Message(expected + "at_least_one")),
        ]
        for name, ok, wanted in checks:
            if not ok:
                value = repr(getattr(self, name))
                raise ValueError(Message("settings.invalid", name=name, expected=wanted, value=value))
        paper.check(self.arch, self.resolution)
        if self.resolution != paper.ZOO and self.width != 1.0:
            raise ValueError(f"width {self.width:g}: at paper scale the papers' own widths are used; leave width at 1")
        if self.patience and not self.val_split:
            raise ValueError(Message("settings.patience_needs_val", patience=self.patience))


class TrainingError(RuntimeError):
    """A run that cannot go on; the message says what to change."""


class Diverged(TrainingError):
    """The loss became non-finite or exploded; the message says where, and which learning rate to try."""


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


MIN_CURVE_POINTS = 20  # step reports a run makes at least, where it has that many batches


def report_every(log_every: int, total_steps: int) -> int:
    """Batches between step reports: ``log_every``, or fewer in a run too short for it to draw a curve (500
    images for one epoch are 4 batches: every 10th batch reported it as one point, a chart with no line)."""
    return max(1, min(log_every, total_steps // MIN_CURVE_POINTS))


def clock(seconds: float | None) -> str:
    """A duration as a clock shows it: '4:05', or '1:02:03' from an hour on (None: '0:00')."""
    seconds = int(seconds or 0)
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours}:{minutes:02d}:{seconds % 60:02d}" if hours else f"{minutes}:{seconds % 60:02d}"


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
    """Subscribe to a run's progress by overriding any of these no-op hooks (as Keras and Lightning do).

    Both trainers call them with themselves first: a classifier's Trainer with StepEvent and EpochEvent,
    the GAN's GanTrainer with GanStep and GanEpoch. A hook may read the trainer, or set
    ``trainer.should_stop = True`` to end the run before its next batch.
    """

    def on_start(self, trainer: Trainer | GanTrainer) -> None: ...

    def on_step(self, trainer: Trainer | GanTrainer, event: StepEvent | GanStep) -> None:
        """Every ``trainer.log_every`` batches and at each epoch's end."""

    def on_epoch_end(self, trainer: Trainer | GanTrainer, event: EpochEvent | GanEpoch) -> None: ...

    def on_evaluate(self, trainer: Trainer) -> None:
        """A classifier's training is over and the test set is being scored."""


@dataclass
class Evaluation:
    loss: float
    accuracy: float  # percent
    predictions: torch.Tensor  # predicted class per image, on the CPU


Status = Literal["completed", "early-stopped", "stopped", "diverged"]


@dataclass
class TrainResult:
    model: nn.Module  # holding the best weights (highest validation accuracy, then lowest loss)
    config: TrainConfig
    status: Status
    history: list[EpochEvent]
    test: Evaluation | None  # None on ranks other than 0 of a run across ranks, which evaluate nothing
    best_epoch: int
    seconds: float  # wall clock, data loading and evaluation included
    train_samples_per_s: float  # optimisation steps only
    device: str
    divergence: str | None = None  # status "diverged": where the loss exploded, which epoch was kept, what to change

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
            "divergence": self.divergence,
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


def describe_device(device: str | torch.device | None = None, *, threads: int | None = None) -> str:
    """A short human name: 'NVIDIA H200 (139 GiB)' or 'CPU, 2 threads' (``threads``, or as many as torch
    uses in this thread)."""
    device = resolve_device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "Apple GPU (mps)"
    threads = threads or torch.get_num_threads()
    return Message("devices.cpu_one") if threads == 1 else Message("devices.cpu", threads=threads)


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
    batch_size: int = EVAL_BATCH,
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


# --- memory: refuse a run that cannot fit before it starts, and explain one that runs out ---------

@dataclass(frozen=True)
class MemoryEstimate:
    """What a run will hold on its device at its peak, in bytes."""

    state: int  # weights, gradients, optimizer state and the copy of the best weights
    data: int  # the training split on the device and its train/validation copies
    per_image: int  # per image of a training batch: activations saved for backward, gradients in flight, input
    evaluation: int  # scoring a split in batches of EVAL_BATCH (after the training step's memory is freed)
    batch_size: int

    @property
    def total(self) -> int:
        return self.state + self.data + max(self.per_image * self.batch_size, self.evaluation)

    def largest_batch(self, available: int) -> int:
        """The largest batch size that fits in ``available`` bytes; 0 if even one image does not."""
        room = available - self.state - self.data
        if room < max(self.evaluation, self.per_image):
            return 0
        return room // self.per_image


def build_model(config: TrainConfig, generator: torch.Generator) -> nn.Module:
    """The network a run of ``config`` trains, its initial weights drawn from ``generator``: the zoo's, or at
    paper scale the paper's (``core.paper``)."""
    classes = len(data.get_spec(config.dataset).classes)
    if config.resolution == paper.ZOO:
        return get_model(config.arch, num_classes=classes, width=config.width, generator=generator)
    return paper.build(config.arch, num_classes=classes, generator=generator)


def eval_batch(config: TrainConfig) -> int:
    """Images per batch when scoring: fewer at paper scale, where VGG-19's maps of 1000 images take 13 GB."""
    return EVAL_BATCH if config.resolution == paper.ZOO else 100


def estimate_memory(config: TrainConfig, *, model: nn.Module | None = None, data_bytes: int = 0) -> MemoryEstimate:
    """The memory a run of ``config`` needs, from one forward pass of two images on the CPU.

    Every tensor that autograd saves for the backward pass is counted once (by its storage), without
    the parameters; a batch of B images saves B/2 times as much. ``model`` (default: built from the
    config) is left untouched: the pass runs on a copy, and nothing is drawn from torch's global random
    generator. Assumes float32; under CUDA's bfloat16 autocast the activations take less, so the
    estimate errs high there.
    """
    if model is None:  # any weights do: a generator of its own leaves torch's global one alone
        model = build_model(config, torch.Generator())
    activations, largest = _saved_per_image(model)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    moments = {"sgd": 1 if config.momentum else 0, "adam": 2, "adamw": 2}[config.optimizer]
    pipeline = 6 * 28 * 28 * 4  # float copies of each input while it is normalised, warped and laid out
    # The factors come from peak resident memory measured on the CPU, with some room: backward adds the
    # activations' gradients (ResNet-18 at batch 1024 peaked at 1.2 times what its forward saves), and
    # scoring in batches of 1000, with nothing saved, still peaked at 0.2 to 0.6 times that, or 3.1 times
    # the largest activation (convolutions copy their input and output to another layout; the allocator
    # keeps freed blocks).
    return MemoryEstimate(
        # the weights, their gradients, the optimizer's moments, the best weights kept
        state=weights * (3 + moments),
        data=2 * data_bytes,
        per_image=math.ceil(1.5 * activations + 2 * largest + pipeline),
        evaluation=math.ceil(eval_batch(config) * (max(0.5 * activations, 4 * largest) + pipeline)),
        batch_size=config.batch_size,
    )


def _saved_per_image(model: nn.Module) -> tuple[float, float]:
    """Bytes per image that a training forward pass saves for backward: in all, and the largest tensor."""
    probe = copy.deepcopy(model).train()  # training mode moves batch-norm statistics: never the real model's
    use_dropout_generator(probe, torch.Generator())  # the probe's masks, on the CPU, from nobody else's generator
    parameters = {id(p.untyped_storage()) for p in probe.parameters()}
    saved: dict[int, torch.UntypedStorage] = {}  # by storage: a tensor saved by two operations counts once

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if id(storage) not in parameters:
            saved[id(storage)] = storage
        return tensor

    images = 2  # training batch norm needs two values per channel
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        probe(torch.zeros(images, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    sizes = [storage.nbytes() for storage in saved.values()] or [0]
    return sum(sizes) / images, max(sizes) / images


def available_memory(device: torch.device) -> int | None:
    """Bytes a run can still take on ``device``; None where that cannot be told (Apple GPUs share the
    system's memory; Windows and macOS have no /proc/meminfo). Then only a real out-of-memory error
    stops a run, with the same advice."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # what this process's caching allocator holds but does not use is free to this run too
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            # MemAvailable counts the page cache the kernel can drop; "free" memory alone is much less
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _lower(config: TrainConfig, largest_batch: int) -> str:
    """What to lower so that a run fits: the batch size (to a power of two that fits), else the width."""
    width = config.width
    smaller = f"lower the width (it is {width:g})" if width > MIN_WIDTH else "choose a smaller architecture"
    if largest_batch < 1:
        return f"even a batch of one image does not fit: {smaller}"
    return f"lower the batch size to {2 ** int(math.log2(largest_batch))} or less, or {smaller}"


def check_memory(config: TrainConfig, estimate: MemoryEstimate, device: torch.device) -> None:
    """Raise TrainingError if the run cannot fit in what ``device`` has free."""
    available = available_memory(device)
    if available is None or estimate.total <= available:
        return
    raise TrainingError(
        f"{get_card(config.arch).title} at width {config.width:g} with batch size {config.batch_size} needs about "
        f"{_size(estimate.total)} of memory, and {describe_device(device)} has {_size(available)} free: "
        f"{_lower(config, estimate.largest_batch(available))}."
    )


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an error is an allocation that failed: CPU, CUDA and MPS word it differently."""
    if isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    if not isinstance(error, RuntimeError) or isinstance(error, TrainingError):
        return False
    text = str(error).lower()
    return any(words in text for words in ("can't allocate memory", "not enough memory", "out of memory"))


class Trainer:
    """One training run: data on the device, model, optimizer and schedule, and the loop.

    ``callbacks`` hear of its progress; setting ``should_stop`` (from a callback or another thread)
    ends it before the next batch, keeping the best weights so far (status "stopped"). ``world`` makes it
    one rank of a run across processes (``core.distributed``): there only rank 0 hears, evaluates and saves.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        device: str | torch.device | None = None,
        data_root: str | os.PathLike | None = None,
        callbacks: Sequence[Callback] = (),
        train_data: data.Split | None = None,
        world: World | None = None,
        sync_bn: bool = False,
    ) -> None:
        """``train_data`` replaces the dataset's training split (e.g. generated digits); the test
        split is still the dataset's own."""
        config.validate()
        self.config = config
        self.world = world
        self.leads = world is None or world.leader
        self.device = world.device if world else resolve_device(device)
        self.data_root = data_root
        self.callbacks = list(callbacks) if self.leads else []
        self.should_stop = False  # set before fit, the run stops before its first batch
        spec = data.get_spec(config.dataset)
        if train_data is None:
            full = data.load(config.dataset, train=True, root=data_root, limit=config.limit)
        else:
            full = train_data.subset(slice(0, config.limit))
        # The initial weights depend on the seed alone: the same draws as seeding torch's global generator
        # and building the model, but from a generator that no other thread seeds or draws from.
        model = build_model(config, torch.Generator().manual_seed(config.seed))
        # Refuse a run that cannot fit before anything is moved to the device (VGG-19 at width 4 and batch
        # size 8192 asked for more than this 24 GB machine has, and failed with a traceback).
        self.memory = estimate_memory(config, model=model, data_bytes=full.images.nbytes + full.labels.nbytes)
        check_memory(config, self.memory, self.device)
        self.train_split, self.val_split = data.split_validation(full.to(self.device), config.val_split,
                                                                 seed=config.seed)
        self.model = model.to(self.device)
        if use_channels_last(self.device):
            self.model = self.model.to(memory_format=torch.channels_last)
        # Dropout masks are drawn where the activations are, from the run's own generator (saved with it).
        self.dropout_generator = torch.Generator(self.device).manual_seed(config.seed)
        use_dropout_generator(self.model, self.dropout_generator)
        # What trains: the model, or DDP around it (whose gradients are averaged over the ranks).
        self.network = world.wrap(self.model, sync_bn=sync_bn) if world else self.model
        self.optimizer = _make_optimizer(self.model, config, self.device)
        tail = len(self.train_split) % config.batch_size
        if world and 0 < tail < world.size:  # a last batch too small to give every rank a share: left out
            self.train_split = self.train_split.subset(slice(0, len(self.train_split) - tail))
        self.steps_per_epoch = math.ceil(len(self.train_split) / config.batch_size)
        self.schedule = _make_schedule(self.optimizer, config, config.epochs * self.steps_per_epoch)
        self.log_every = report_every(config.log_every, config.epochs * self.steps_per_epoch)
        self.generator = torch.Generator().manual_seed(config.seed)  # shuffling and augmentation, on the CPU
        self.background = data.background(config.dataset)
        self.mirror = spec.mirror
        self.exploded_loss = EXPLODED * math.log(len(spec.classes))

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

    def fit(self) -> TrainResult:
        """Train up to ``config.epochs``, keep the best weights, then score the test set.

        A run whose loss diverges stops at once and keeps its best epoch (status "diverged"); one that
        diverges before any epoch is done raises Diverged. Running out of memory raises TrainingError.
        """
        started = time.perf_counter()
        for callback in self.callbacks:
            callback.on_start(self)
        status: Status = "completed"
        divergence = None
        try:
            try:
                for epoch in range(len(self.history) + 1, self.config.epochs + 1):
                    if not self.train_epoch(epoch):
                        status = "stopped"
                        break
                    patience = self.config.patience
                    if self._agreed(bool(patience) and len(self.history) - self.best_epoch >= patience):
                        status = "early-stopped"
                        break
            except Diverged as error:
                if self.best_state is None:
                    raise  # no sane epoch to fall back on: the message says which learning rate to try
                status = "diverged"
                divergence = Message("diverged.kept", error=error.args[0], epoch=self.best_epoch)
            if self.best_state is not None:
                self.model.load_state_dict(self.best_state)
            for callback in self.callbacks:
                callback.on_evaluate(self)
            test = (evaluate(self.model, self.test_split(), self.config.dataset, batch_size=eval_batch(self.config))
                    if self.leads else None)
        except Exception as error:
            if is_out_of_memory(error):
                raise self.out_of_memory(error) from error
            raise
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
            divergence=divergence,
        )

    def out_of_memory(self, error: BaseException) -> TrainingError:
        """The out-of-memory error of a run that started: what ran out, and what to lower."""
        config = self.config
        # The estimate let this run start, so it erred low, and the failed step still holds its memory, so
        # what is free now says little: halve the batch.
        detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        return TrainingError(
            f"out of memory on {describe_device(self.device)} with {get_card(config.arch).title} at width "
            f"{config.width:g} and batch size {config.batch_size} ({detail}): "
            f"{_lower(config, config.batch_size // 2)}."
        )

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Everything needed to continue after the last finished epoch: tensors, and JSON-ready rest."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors |= {f"best.{k}": v for k, v in (self.best_state or {}).items()}
        optimizer = self.optimizer.state_dict()
        for index, state in optimizer["state"].items():
            tensors |= {f"optimizer.{index}.{k}": torch.as_tensor(v) for k, v in state.items()}
        tensors["rng.generator"] = self.generator.get_state()
        tensors["rng.dropout"] = self.dropout_generator.get_state()
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
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        state: dict[int, dict] = {}
        for key, value in part("optimizer.").items():
            index, name = key.split(".", 1)
            param = params[int(index)]
            if value.shape == param.shape:
                # The file holds contiguous tensors, the parameters are channels-last: a fused step reads a
                # parameter and its moments as flat memory, so they must share a layout, or it mixes elements.
                value = torch.empty_like(param).copy_(value)
            state.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": extras["param_groups"]})
        self.generator.set_state(tensors["rng.generator"])
        self.dropout_generator.set_state(tensors["rng.dropout"])
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

    def train_epoch(self, epoch: int) -> bool:
        """One pass over the training split; False if stopped part-way (the epoch is discarded)."""
        config, model, device, world = self.config, self.model, self.device, self.world
        model.train()
        epoch_loss, epoch_correct = 0.0, 0
        interval_loss = torch.zeros((), device=device)
        interval_correct = torch.zeros((), device=device, dtype=torch.long)
        interval_seen = 0
        epoch_start = interval_start = time.perf_counter()
        batches = data.batches(self.train_split, config.batch_size, shuffle=True, generator=self.generator)
        for step, (images, labels) in enumerate(batches, start=1):
            if self.should_stop:
                self.train_seconds += time.perf_counter() - epoch_start
                return False
            x = data.normalize(images, config.dataset)
            if config.augment:
                x = data.augment(x, generator=self.generator, fill=self.background, mirror=self.mirror,
                                 **({} if config.warp else _SHIFTS_ONLY))
                if config.erase:  # drawn only when asked for: runs without erasing keep their random stream
                    x = data.erase(x, config.erase, generator=self.generator)
            if world:
                batch = len(labels)
                x, labels = world.share(x, labels)
            if use_channels_last(device):
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                outputs = self.network(x)
            loss, logits = outputs_loss(outputs, labels, config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            # DDP averages the ranks' gradients; each loss is scaled so that the average is the global batch's mean.
            (loss * (len(labels) * world.size / batch) if world else loss).backward()
            self.optimizer.step()
            self.schedule.step()

            n = len(labels)
            interval_loss += loss.detach() * n
            interval_correct += (logits.argmax(1) == labels).sum()
            interval_seen += n
            if step % self.log_every == 0 or step == self.steps_per_epoch:
                # the one host sync per interval (and, across ranks, the one collective)
                totals = (interval_loss.item(), interval_correct.item(), interval_seen)
                loss_sum, correct, seen = world.total(*totals) if world else totals
                mean_loss = loss_sum / seen
                if self.diverged(mean_loss):
                    self.train_seconds += time.perf_counter() - epoch_start
                    raise self.divergence(Message("diverged.step", epoch=epoch, step=step), mean_loss)
                now = time.perf_counter()
                done = (epoch - 1) * self.steps_per_epoch + step
                seconds_per_step = (now - epoch_start) / step
                step_event = StepEvent(
                    epoch=epoch, epochs=config.epochs, step=step, steps_per_epoch=self.steps_per_epoch,
                    loss=mean_loss,
                    accuracy=100.0 * correct / seen,
                    lr=self.optimizer.param_groups[0]["lr"],
                    samples_per_s=seen / max(now - interval_start, 1e-9),
                    eta_s=(config.epochs * self.steps_per_epoch - done) * seconds_per_step,
                )
                for callback in self.callbacks:
                    callback.on_step(self, step_event)
                epoch_loss, epoch_correct = epoch_loss + loss_sum, epoch_correct + correct
                interval_loss.zero_()
                interval_correct.zero_()
                interval_seen = 0
                interval_start = now
        seconds = time.perf_counter() - epoch_start
        self.train_seconds += seconds
        self.train_samples += len(self.train_split)

        train_loss = epoch_loss / len(self.train_split)
        train_accuracy = 100.0 * epoch_correct / len(self.train_split)
        if len(self.val_split) and self.leads:
            val = evaluate(model, self.val_split, config.dataset, batch_size=eval_batch(config))
            if self._agreed(self.diverged(val.loss)):  # such weights must never be kept as the best
                raise self.divergence(Message("diverged.validation", epoch=epoch), val.loss)
            val_loss, val_accuracy, score = val.loss, val.accuracy, (-val.accuracy, val.loss)
        else:
            if len(self.val_split) and self._agreed(False):  # rank 0 says whether its validation diverged
                raise self.divergence(Message("diverged.validation", epoch=epoch), math.inf)
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
        for callback in self.callbacks:
            callback.on_epoch_end(self, event)
        return True

    def _agreed(self, decision: bool) -> bool:
        """Rank 0's decision, on every rank of a run across ranks, which must all take the same path."""
        return self.world.agree(decision) if self.world else decision

    def diverged(self, loss: float) -> bool:
        """A mean loss that is not finite, or far worse than guessing: the weights are ruined."""
        return not math.isfinite(loss) or loss > self.exploded_loss

    def divergence(self, where: Message, loss: float) -> Diverged:
        lr = self.config.lr
        return Diverged(Message("diverged.message", where=where, loss=loss, guess=self.exploded_loss / EXPLODED, lr=lr,
                                lower=lr / 10))


def train(
    config: TrainConfig,
    *,
    device: str | torch.device | None = None,
    data_root: str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Build a Trainer and run it: the one-call form for scripts."""
    return Trainer(config, device=device, data_root=data_root, callbacks=callbacks).fit()

