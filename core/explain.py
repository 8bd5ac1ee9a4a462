"""Look inside any network: feature maps, filters, saliency, Grad-CAM and occlusion.

Zeiler & Fergus (ZFNet, 2013) improved AlexNet by looking at what its layers respond to: shallow
layers find edges and strokes, deep ones parts of objects, and covering the right part of an image
changes the answer. Everything here works for any ``nn.Module`` and needs no table per architecture.

Stages come from the model's own structure: the children of ``model.features`` (or of the model
itself when it has no ``features``), grouped so that each stage starts at a learnt layer (a
convolution, a fully connected layer, or a block holding them) and takes in the activations and
normalisations after it, up to the next pooling. A forward hook on the group's last module reads
the stage's output. An MLP's stages are its hidden layers: a fully connected unit is a 1 x 1 map.

    >>> inside = look_inside(model, x)  # x: one normalised input, 1 x 1 x 28 x 28
    >>> [(m.stage.title, tuple(m.values.shape)) for m in inside.maps]
    [('conv 5x5', (6, 28, 28)), ('conv 5x5', (16, 10, 10)), ('conv 5x5', (120, 1, 1))]

``look_inside`` is the cheap part, one forward pass; saliency, Grad-CAM and occlusion (one pass per
patch position) are calls of their own, so that a page computes only the view on screen.

Every function puts the model in eval mode for the call and restores its mode afterwards, removes
its hooks in ``finally`` blocks, and takes gradients with ``torch.autograd.grad``, so that no
parameter's ``.grad`` is touched: a model shared by several browser sessions can be inspected.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core import data
from core.models import evaluating

_LEARNT = (nn.Conv2d, nn.Linear)
_POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d, nn.LPPool2d)


@dataclass(frozen=True)
class Stage:
    """One stage of a network, read at the output of ``module``; stages compare by name."""

    name: str  # the hooked module's path in the model, e.g. "features.4"; unique within a model
    title: str  # what a student reads, e.g. "conv 5x5", "basic block", "inception3a"
    module: nn.Module = field(compare=False, repr=False)


@dataclass
class FeatureMap:
    stage: Stage
    values: Tensor  # one input's activation on the CPU: C x H x W, or D for a fully connected stage

    @property
    def maps(self) -> Tensor:
        """C x H x W; each unit of a fully connected stage is a 1 x 1 map."""
        v = self.values
        return v.reshape(-1, 1, 1) if v.dim() == 1 else v.reshape(v.shape[0], v.shape[1], -1)

    @property
    def means(self) -> Tensor:
        """Each channel's mean activation."""
        return self.maps.mean(dim=(1, 2))

    @property
    def convolutional(self) -> bool:
        return self.values.dim() == 3


@dataclass
class Inside:
    """What every view of the Inside page needs for one model and one input: one forward pass and the weights."""

    probabilities: Tensor  # (classes,)
    target: int  # the class explained: the true label when known, else the answer
    maps: list[FeatureMap]
    filters: Tensor | None  # the first layer's weights as images, K x h x w

    @property
    def answer(self) -> int:
        return int(self.probabilities.argmax())


# --- stages -----------------------------------------------------------------------------------


def _has_learnt_layer(module: nn.Module) -> bool:
    return any(isinstance(m, _LEARNT) for m in module.modules())


def _words(class_name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", class_name).lower()  # "BasicBlock" -> "basic block"


def _title(name: str, module: nn.Module) -> str:
    if not name.isdigit():
        return name  # the model's own name for it, e.g. GoogLeNet's "inception3a"
    if isinstance(module, nn.Conv2d):
        return f"conv {module.kernel_size[0]}x{module.kernel_size[1]}"
    if isinstance(module, nn.Linear):
        return f"linear {module.out_features}"
    if isinstance(module, nn.Sequential):
        # A plain container says nothing: name it after its first learnt part.
        first = next((n, m) for n, m in module.named_children() if _has_learnt_layer(m))
        return _title(*first)
    return _words(type(module).__name__)


def find_stages(model: nn.Module) -> list[Stage]:
    """The model's stages in forward order, found from its structure (see the module docstring)."""
    trunk = getattr(model, "features", None)
    prefix, root = ("features.", trunk) if isinstance(trunk, nn.Module) else ("", model)
    # A trunk that is a single layer is a stage of its own.
    children = list(root.named_children()) or [("0", root)]
    stages: list[Stage] = []
    group: list[tuple[str, nn.Module]] = []

    def close() -> None:
        if group:
            (first_name, first), (last_name, last) = group[0], group[-1]
            path = prefix + last_name if last is not root else prefix.rstrip(".")
            stages.append(Stage(path, _title(first_name, first), last))
            group.clear()

    for name, child in children:
        if _has_learnt_layer(child):
            close()
            group.append((name, child))
        elif isinstance(child, _POOLING):
            close()
        elif group:
            # Trailing activations join their stage, so no in-place op runs after a hooked output.
            group.append((name, child))
    close()
    return stages


def _stage(model: nn.Module, name: str) -> Stage:
    stages = find_stages(model)
    for stage in stages:
        if stage.name == name:
            return stage
    raise ValueError(f"no stage {name!r} in {type(model).__name__}; its stages are {[s.name for s in stages]}")


class _Stop(Exception):
    """Raised by a hook to skip the layers after the last stage needed."""


def _run(model: nn.Module, x: Tensor, stages: list[Stage], *,
         stop_after: Stage | None = None) -> tuple[Tensor | None, dict[str, Tensor]]:
    """Forward ``x`` and record each stage's output; the logits are None when stopped early."""
    outputs: dict[str, Tensor] = {}
    thread = threading.get_ident()

    def recorder(stage: Stage):
        def record(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            # A shared model may be running for another session at the same moment: keep ours only.
            if threading.get_ident() != thread:
                return
            outputs[stage.name] = output
            if stage is stop_after:
                raise _Stop

        return record

    handles = [stage.module.register_forward_hook(recorder(stage)) for stage in stages]
    try:
        return model(x), outputs
    except _Stop:
        return None, outputs
    finally:
        for handle in handles:
            handle.remove()


def _check_one(x: Tensor) -> None:
    if x.dim() != 4 or len(x) != 1:
        raise ValueError(f"expected one input of shape 1 x C x H x W, got {tuple(x.shape)}")


def _target(logits: Tensor, target: int | None) -> int:
    if target is None:
        return int(logits[0].argmax())
    if not 0 <= target < logits.shape[1]:
        raise ValueError(f"target class {target} is not one of the model's {logits.shape[1]} classes")
    return target


# --- what the network computes --------------------------------------------------------------------


def feature_maps(model: nn.Module, x: Tensor) -> tuple[Tensor, list[FeatureMap]]:
    """The class probabilities for one input and the activation of every stage, from one forward pass."""
    _check_one(x)
    stages = find_stages(model)
    with evaluating(model), torch.no_grad():
        logits, outputs = _run(model, x, stages)
    maps = [FeatureMap(s, outputs[s.name][0].float().cpu()) for s in stages if s.name in outputs]
    return logits[0].float().softmax(0), maps


def first_layer_filters(model: nn.Module, *, input_shape: tuple[int, ...] = (1, 28, 28)) -> Tensor | None:
    """The first learnt layer's weights as images (K x h x w), averaged over the input channels.

    A convolution gives its small kernels; a fully connected first layer (the MLP's) gives one
    whole-image template per unit. None if the first layer cannot be drawn on the input's grid.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().float().mean(1).cpu()
        if isinstance(module, nn.Linear):
            if module.in_features != math.prod(input_shape):
                return None
            return module.weight.detach().float().reshape(-1, *input_shape).mean(1).cpu()
    return None


def saliency(model: nn.Module, x: Tensor, target: int | None = None) -> Tensor:
    """The gradient of the target's score (the answer by default) with respect to the input, x's shape.

    Simonyan et al. (2013): its size says how much a small change of each pixel moves the score.
    """
    _check_one(x)
    with evaluating(model), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        logits = model(x)
        (gradient,) = torch.autograd.grad(logits[0, _target(logits, target)], x)
    return gradient


def saliency_map(model: nn.Module, x: Tensor, target: int | None = None) -> Tensor:
    """The saliency as a picture (H x W): the size of the gradient, the largest over the input channels."""
    return saliency(model, x, target)[0].abs().amax(0).cpu()


def grad_cam(model: nn.Module, x: Tensor, target: int | None = None, *,
             stage: str | None = None) -> tuple[Tensor, Stage]:
    """Grad-CAM (Selvaraju et al., 2017): where a convolutional stage found evidence for the target.

    Each channel of the stage is weighted by the mean gradient of the target's score over it; the
    positive part of the weighted sum is upsampled to the input's size and scaled to [0, 1]. By
    default the last stage whose maps are larger than 1 x 1 (a 1 x 1 map, like LeNet's C5, has no
    "where"). Returns the map and the stage used; ValueError for a model without feature maps.
    """
    _check_one(x)
    stages = find_stages(model)
    with evaluating(model), torch.enable_grad():
        logits, outputs = _run(model, x.detach().clone().requires_grad_(True), stages)
        spatial = [s for s in stages if s.name in outputs and outputs[s.name].dim() == 4]
        if not spatial:
            raise ValueError(f"{type(model).__name__} has no convolutional stage: Grad-CAM needs feature maps")
        if stage is None:
            chosen = next((s for s in reversed(spatial) if outputs[s.name].shape[-2:].numel() > 1), spatial[-1])
        else:
            chosen = _stage(model, stage)
            if chosen not in spatial:
                raise ValueError(f"stage {stage!r} has no feature maps for Grad-CAM")
        activation = outputs[chosen.name]
        (gradient,) = torch.autograd.grad(logits[0, _target(logits, target)], activation)
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # N x C x 1 x 1: how much each channel helps
    cam = F.relu((weights * activation.detach()).sum(1, keepdim=True))
    cam = F.interpolate(cam.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    peak = cam.max()
    return (cam / peak if peak > 0 else cam), chosen


def _positions(size: int, patch: int, stride: int) -> list[int]:
    """Patch offsets along one side, with a last one flush with the edge so every pixel is covered."""
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else [*starts, size - patch]


def occlusion(model: nn.Module, x: Tensor, target: int | None = None, *, patch: int = 4, stride: int = 2,
              fill: float = 0.0) -> Tensor:
    """ZFNet's experiment: how much the target's probability drops when a square patch hides each pixel.

    Every position of the patch is one image of a single batch (one forward pass, with the intact
    input first). Each pixel gets the mean drop over the positions that cover it: positive where
    hiding it hurts the answer, negative where hiding it helps. ``fill`` is the patch's value in
    normalised units; 0 is the dataset's mean pixel, ZFNet's grey.
    """
    _check_one(x)
    _, _, height, width = x.shape
    if not 1 <= patch <= min(height, width):
        raise ValueError(f"patch must be between 1 and {min(height, width)} pixels, got {patch}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    rows, cols = torch.arange(height), torch.arange(width)
    tops = torch.tensor(_positions(height, patch, stride))
    lefts = torch.tensor(_positions(width, patch, stride))
    in_rows = (rows >= tops[:, None]) & (rows < tops[:, None] + patch)  # T x H
    in_cols = (cols >= lefts[:, None]) & (cols < lefts[:, None] + patch)  # L x W
    masks = (in_rows[:, None, :, None] & in_cols[None, :, None, :]).reshape(-1, 1, height, width)  # P x 1 x H x W
    occluded = x.detach().expand(len(masks), -1, -1, -1).masked_fill(masks.to(x.device), fill)  # P x C x H x W
    with evaluating(model), torch.no_grad():
        probabilities = model(torch.cat([x.detach(), occluded])).float().softmax(1)
    t = _target(probabilities[:1], target)
    drops = (probabilities[0, t] - probabilities[1:, t]).cpu()  # P
    covered = masks[:, 0].float()
    return (drops[:, None, None] * covered).sum(0) / covered.sum(0)


def look_inside(model: nn.Module, x: Tensor, *, target: int | None = None) -> Inside:
    """The answer, the class to explain (``target``, the answer by default), every stage's feature maps
    and the first layer's filters for one input, from a single forward pass.

    The views that cost more passes are their own calls: ``saliency_map``, ``grad_cam``, ``occlusion``.
    """
    probabilities, maps = feature_maps(model, x)
    return Inside(probabilities=probabilities, target=_target(probabilities[None], target), maps=maps,
                  filters=first_layer_filters(model, input_shape=tuple(x.shape[1:])))


# --- what a channel looks for ----------------------------------------------------------------------


def _channel_activation(model: nn.Module, stage: Stage, channel: int, x: Tensor) -> Tensor:
    """The mean activation of one channel for each input (N,), running the model only up to the stage."""
    _, outputs = _run(model, x, [stage], stop_after=stage)
    activation = outputs[stage.name]
    if not 0 <= channel < activation.shape[1]:
        raise ValueError(f"stage {stage.name!r} has {activation.shape[1]} channels; got channel {channel}")
    return activation[:, channel].reshape(len(x), -1).mean(1)


def top_images(model: nn.Module, stage: str, channel: int, images: Tensor, *, k: int = 8,
               batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """The ``k`` inputs (normalised, N x C x H x W) that excite a channel most: indices and mean activations."""
    chosen = _stage(model, stage)
    with evaluating(model), torch.no_grad():
        scores = torch.cat([_channel_activation(model, chosen, channel, batch).float().cpu()
                            for batch in images.split(batch_size)])
    top = scores.topk(min(k, len(scores)))
    return top.indices, top.values


def _blur(image: Tensor) -> Tensor:
    kernel = torch.tensor([1.0, 2.0, 1.0], dtype=image.dtype, device=image.device)
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(image.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernel, groups=image.shape[1])


def maximise_channel(model: nn.Module, stage: str, channel: int, *, dataset: str = "mnist", steps: int = 200,
                     starts: int = 8, lr: float = 0.1, decay: float = 0.005, blur_every: int = 4, jitter: int = 1,
                     input_shape: tuple[int, ...] = (1, 28, 28), seed: int = 0) -> Tensor:
    """The input pattern that excites one channel most, grown from noise by gradient ascent (H x W, pixels in [0, 1]).

    Unregularised ascent finds high-frequency noise that no digit contains. The regularisers of
    Yosinski et al. (2015) keep the pattern image-like: pixels stay in [0, 1] (ink on paper), a
    decay pulls them back to blank paper, a blur every few steps removes speckle, and a random shift
    of up to ``jitter`` pixels each step asks for a pattern that works wherever it lands. A ReLU
    unit that is off for a start never gets a gradient, so ``starts`` noise images of different
    brightness climb together in one batch and the best one wins.
    """
    if steps < 1 or starts < 1:
        raise ValueError(f"steps and starts must be at least 1, got {steps} and {starts}")
    chosen = _stage(model, stage)
    spec = data.get_spec(dataset)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    brightness = torch.linspace(0.05, 0.5, starts).reshape(-1, *[1] * len(input_shape))
    pixels = (brightness + 0.2 * torch.randn(starts, *input_shape, generator=generator)).clamp(0, 1).to(device)
    pixels.requires_grad_(True)
    optimizer = torch.optim.Adam([pixels], lr=lr, maximize=True)
    shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=generator).tolist()

    def normalised(images: Tensor) -> Tensor:
        return (images - spec.mean) / spec.std

    with evaluating(model):
        with torch.enable_grad():
            for step, (dy, dx) in enumerate(shifts):
                x = normalised(torch.roll(pixels, (dy, dx), dims=(2, 3)))
                # The starts are independent: the gradient of the sum is each one's own gradient.
                activation = _channel_activation(model, chosen, channel, x).sum()
                (pixels.grad,) = torch.autograd.grad(activation, pixels)
                optimizer.step()
                with torch.no_grad():
                    pixels.mul_(1 - decay)
                    if (step + 1) % blur_every == 0:
                        pixels.copy_(_blur(pixels))
                    pixels.clamp_(0, 1)
        with torch.no_grad():
            best = _channel_activation(model, chosen, channel, normalised(pixels)).argmax()
    return pixels.detach()[best].mean(0).cpu()


# --- helpers for showing the results ----------------------------------------------------------------


def as_input(image: np.ndarray | Tensor, dataset: str) -> Tensor:
    """A 28x28 picture with bright ink (uint8, or float in [0, 1]) -> 1 x 1 x 28 x 28, normalised.

    Floats are rounded to 8 bits first, as the Draw page does, so that a drawing and a test image go
    through exactly the same steps.
    """
    pixels = torch.as_tensor(np.asarray(image))
    if pixels.dim() != 2:
        raise ValueError(f"expected one greyscale picture (H x W), got shape {tuple(pixels.shape)}")
    if pixels.is_floating_point():
        pixels = (pixels.clamp(0, 1) * 255).round().to(torch.uint8)
    return data.normalize(pixels.unsqueeze(0), dataset)


def mosaic(maps: Tensor, *, columns: int | None = None, gap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tile C maps (C x H x W) into one image, with NaN gaps between tiles; also each pixel's channel (-1 in gaps).

    By default the gaps are 1 pixel, and 1 x 1 maps (fully connected units) are packed without gaps, so
    a layer of units reads as one picture.
    """
    count, height, width = maps.shape
    columns = columns or max(1, math.ceil(math.sqrt(count * height / width)))
    rows = math.ceil(count / columns)
    if gap is None:
        gap = 0 if height * width == 1 else 1
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), np.nan, dtype=np.float32)
    channel = np.full(grid.shape, -1, dtype=np.int64)
    for c in range(count):
        top, left = (c // columns) * (height + gap), (c % columns) * (width + gap)
        grid[top : top + height, left : left + width] = maps[c].numpy()
        channel[top : top + height, left : left + width] = c
    return grid, channel
