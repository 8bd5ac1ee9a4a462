"""A network as data: a versioned list of layers, checked layer by layer, built as a zoo-shaped ``nn.Module``.

A spec is JSON a student can read and write::

    {"version": 1, "name": "my-lenet", "layers": [
        {"type": "conv", "channels": 6, "kernel": 5, "padding": 2}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
        {"type": "flatten"}, {"type": "linear", "units": 10}]}

``check`` follows the shape of one image through the layers and refuses, naming the layer, what cannot work
("layer 4, conv: kernel 7 is larger than its 5x5 input"); ``build`` makes the network. Its ``features`` are the
layers before the first flatten or global average pooling, its ``classifier`` the rest, as in every zoo model
(``split_at``),
so the pages that look inside a zoo model look inside a built one the same way.

    >>> net = build(parse(TEMPLATES["lenet5-relu"]))
    >>> sum(p.numel() for p in net.parameters())
    61706
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core.i18n import Message
from core.models import SPEC_PREFIX, ModelCard, get_card, register_model
from core.models._utils import Dropout, he_init
from core.models.googlenet import Inception, InceptionAux

VERSION = 1
MAX_LAYERS = 100  # MobileNet, the longest classic, takes 83; much longer is a typo or a loop, not a classroom network
INPUT = (1, 28, 28)  # channels, height, width of one image
NUM_CLASSES = 10
MAX_PARAMS = 5_000_000  # the classroom budget every zoo model keeps (tests/test_models.py)
MAX_MACS = 25_000_000

REQUIRED = object()  # a setting with no default: the spec must give it

# Every layer type and its settings, with their defaults.
SETTINGS: dict[str, dict[str, Any]] = {
    "conv": {"channels": REQUIRED, "kernel": REQUIRED, "stride": 1, "padding": 0, "groups": 1, "bias": True},
    "maxpool": {"kernel": REQUIRED, "stride": None, "padding": 0, "ceil": False},  # stride None: the kernel's
    "avgpool": {"kernel": REQUIRED, "stride": None, "padding": 0, "ceil": False},
    "batchnorm": {},
    "relu": {}, "tanh": {}, "sigmoid": {}, "gelu": {},
    "dropout": {"p": 0.5},
    "lrn": {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0},
    "flatten": {},
    "gap": {},  # global average pooling: C x H x W -> C
    "linear": {"units": REQUIRED, "bias": True},
    "residual": {"channels": REQUIRED, "stride": 1},  # two 3x3 convs and a shortcut, projected when shapes change
    # GoogLeNet's module: 1x1, 1x1 -> 3x3, 1x1 -> 5x5 and pool -> 1x1 branches side by side (torchvision's names)
    "inception": {"ch1x1": REQUIRED, "ch3x3red": REQUIRED, "ch3x3": REQUIRED, "ch5x5red": REQUIRED,
                  "ch5x5": REQUIRED, "pool_proj": REQUIRED},
    # an auxiliary classifier on the maps here, whose loss joins in training only; the maps pass on unchanged
    "aux": {"channels": 32, "units": 256, "p": 0.7},
}
BRANCHES = ("ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj")
LAYER_TYPES = tuple(SETTINGS)
# What each whole-number setting may be: at least the first, at most the second.
_RANGES = {"channels": (1, 2048), "kernel": (1, 28), "stride": (1, 28), "padding": (0, 14), "groups": (1, 2048),
           "units": (1, 100_000), "size": (1, 99), **dict.fromkeys(BRANCHES, (1, 2048))}


class SpecError(ValueError):
    """A spec that cannot be built; the message (a Message) names the layer and the problem."""


def _refuse(index: int | None, kind: str | None, key: str, **fields: Any) -> SpecError:
    problem = Message(f"spec.{key}", **fields)
    if index is None:
        return SpecError(problem)
    return SpecError(Message("spec.at_layer", index=index, type=kind, problem=problem))


@dataclass(frozen=True)
class Layer:
    type: str
    settings: Mapping[str, Any]  # every setting of its type, defaults filled in

    def as_json(self) -> dict[str, Any]:
        """The layer as a spec writes it: its type and the settings that differ from the defaults."""
        defaults = SETTINGS[self.type]
        return {"type": self.type, **{k: v for k, v in self.settings.items() if v != defaults[k]}}


@dataclass(frozen=True)
class Spec:
    name: str
    layers: tuple[Layer, ...]

    def as_json(self) -> dict[str, Any]:
        return {"version": VERSION, "name": self.name, "layers": [layer.as_json() for layer in self.layers]}

    def dumps(self) -> str:
        """The spec as a file, one layer a line."""
        layers = ",\n    ".join(json.dumps(layer.as_json()) for layer in self.layers)
        name = json.dumps(self.name, ensure_ascii=False)
        return f'{{"version": {VERSION}, "name": {name}, "layers": [\n    {layers}\n]}}\n'


def _setting(index: int, kind: str, name: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _refuse(index, kind, "not_bool", name=name, value=repr(value))
        return value
    if name in ("p", "alpha", "beta", "k"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _refuse(index, kind, "not_number", name=name, value=repr(value))
        if name == "p" and not 0 <= value < 1:
            raise _refuse(index, kind, "dropout", value=value)
        return float(value)
    if value is None and default is None:  # a pooling's stride: its kernel's
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(index, kind, "not_whole", name=name, value=repr(value))
    low, high = _RANGES[name]
    if not low <= value <= high:
        raise _refuse(index, kind, "out_of_range", name=name, value=value, low=low, high=high)
    return value


def parse(document: str | bytes | Mapping[str, Any]) -> Spec:
    """A spec from its JSON text (or the parsed object), its structure and settings checked; SpecError if not."""
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _refuse(None, None, "not_json", error=str(error)) from error
    if not isinstance(document, Mapping) or not isinstance(document.get("layers"), list):
        raise _refuse(None, None, "no_layers")
    version = document.get("version")
    if version != VERSION:
        key = "future" if isinstance(version, int) and version > VERSION else "version"
        raise _refuse(None, None, key, version=repr(version), known=VERSION)
    entries = document["layers"]
    if not entries:
        raise _refuse(None, None, "empty")
    if len(entries) > MAX_LAYERS:
        raise _refuse(None, None, "too_many", count=len(entries), most=MAX_LAYERS)
    name = document.get("name", "my-network")
    if not isinstance(name, str) or not name.strip():
        raise _refuse(None, None, "no_name")
    layers = []
    for index, entry in enumerate(entries, start=1):
        kind = entry.get("type") if isinstance(entry, Mapping) else None
        if kind not in SETTINGS:
            raise _refuse(index, str(kind), "unknown_type", types=", ".join(LAYER_TYPES))
        defaults = SETTINGS[kind]
        unknown = sorted(set(entry) - {"type"} - set(defaults))
        if unknown:
            raise _refuse(index, kind, "unknown_setting", names=", ".join(unknown),
                          known=", ".join(defaults) or "—")
        settings = {}
        for setting, default in defaults.items():
            if setting not in entry and default is REQUIRED:
                raise _refuse(index, kind, "missing", name=setting)
            settings[setting] = _setting(index, kind, setting, entry.get(setting, default), default)
        layers.append(Layer(kind, settings))
    return Spec(name.strip(), tuple(layers))


# --- shapes --------------------------------------------------------------------------------------------

Shape = tuple[int, ...]  # C x H x W before flattening, then (units,)


def _pooled(size: int, kernel: int, stride: int, padding: int, ceil: bool) -> int:
    span = size + 2 * padding - kernel
    out = (math.ceil if ceil else math.floor)(span / stride) + 1
    if ceil and (out - 1) * stride >= size + padding:  # PyTorch's rule: the last window starts inside
        out -= 1
    return out


def output_shape(index: int, layer: Layer, shape: Shape) -> Shape:
    """The shape one image has after ``layer``, or SpecError saying why the layer cannot take ``shape``."""
    kind, s = layer.type, layer.settings
    spatial = len(shape) == 3
    if kind in ("conv", "maxpool", "avgpool", "lrn", "gap", "residual", "inception", "aux") and not spatial:
        raise _refuse(index, kind, "needs_maps", units=shape[0])
    if kind == "linear" and spatial:
        raise _refuse(index, kind, "needs_flat", shape=" x ".join(map(str, shape)))
    if kind in ("conv", "maxpool", "avgpool"):
        channels, height, width = shape
        kernel, padding = s["kernel"], s["padding"]
        stride = s["stride"] or kernel
        if kernel > min(height, width) + 2 * padding:
            raise _refuse(index, kind, "kernel_too_large", kernel=kernel, height=height, width=width)
        if kind != "conv" and padding > kernel // 2:
            raise _refuse(index, kind, "pool_padding", padding=padding, kernel=kernel)
        if kind == "conv":
            if channels % s["groups"] or s["channels"] % s["groups"]:
                raise _refuse(index, kind, "groups", groups=s["groups"], inputs=channels, outputs=s["channels"])
            size = [(n + 2 * padding - kernel) // stride + 1 for n in (height, width)]
            return s["channels"], *size
        size = [_pooled(n, kernel, stride, padding, s["ceil"]) for n in (height, width)]
        return channels, *size
    if kind == "residual":
        channels, height, width = shape
        stride = s["stride"]
        if stride > min(height, width):
            raise _refuse(index, kind, "kernel_too_large", kernel=stride, height=height, width=width)
        return s["channels"], *[(n - 1) // stride + 1 for n in (height, width)]
    if kind == "inception":
        return s["ch1x1"] + s["ch3x3"] + s["ch5x5"] + s["pool_proj"], *shape[1:]  # the branches concatenated
    if kind == "flatten":
        return (math.prod(shape),)
    if kind == "gap":
        return (shape[0],)
    if kind == "linear":
        return (s["units"],)
    return shape  # batch norm, activations, dropout, lrn and an auxiliary head keep the shape


def check(spec: Spec, *, num_classes: int = NUM_CLASSES, in_shape: Shape = INPUT) -> list[Shape]:
    """Each layer's output shape for one image; SpecError if a layer cannot take its input, or if the network
    does not end in one score per class."""
    shapes, shape = [], in_shape
    for index, layer in enumerate(spec.layers, start=1):
        shape = output_shape(index, layer, shape)
        if 0 in shape:
            raise _refuse(index, layer.type, "nothing_left", shape=" x ".join(map(str, shape)))
        shapes.append(shape)
    if shape != (num_classes,):
        raise _refuse(None, None, "output", shape=" x ".join(map(str, shape)), classes=num_classes)
    return shapes


# --- building ------------------------------------------------------------------------------------------

class Residual(nn.Module):
    """Two 3x3 convolutions with batch norm, added to the input, as ResNet's basic block; the shortcut is a
    1x1 convolution with batch norm where the channels or the size change."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity() if stride == 1 and in_channels == channels else nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + self.shortcut(x))


def _module(layer: Layer, shape: Shape, num_classes: int) -> nn.Module:
    s = layer.settings
    match layer.type:
        case "conv":
            return nn.Conv2d(shape[0], s["channels"], s["kernel"], s["stride"], s["padding"], groups=s["groups"],
                             bias=s["bias"])
        case "maxpool":
            return nn.MaxPool2d(s["kernel"], s["stride"] or s["kernel"], s["padding"], ceil_mode=s["ceil"])
        case "avgpool":
            return nn.AvgPool2d(s["kernel"], s["stride"] or s["kernel"], s["padding"], ceil_mode=s["ceil"])
        case "batchnorm":
            return nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])
        case "relu":
            return nn.ReLU(inplace=True)
        case "tanh":
            return nn.Tanh()
        case "sigmoid":
            return nn.Sigmoid()
        case "gelu":
            return nn.GELU()
        case "dropout":
            return Dropout(s["p"])
        case "lrn":
            return nn.LocalResponseNorm(s["size"], s["alpha"], s["beta"], s["k"])
        case "flatten":
            return nn.Flatten()
        case "gap":
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        case "linear":
            return nn.Linear(shape[0], s["units"], bias=s["bias"])
        case "residual":
            return Residual(shape[0], s["channels"], s["stride"])
        case "inception":
            return Inception(shape[0], *(s[branch] for branch in BRANCHES))
        case "aux":
            return InceptionAux(shape[0], num_classes, conv_channels=s["channels"], hidden=s["units"], dropout=s["p"])
    raise AssertionError(layer.type)  # parse admits no other type


def split_at(spec: Spec) -> int:
    """Where ``features`` end and ``classifier`` begins: at the first flatten or global pooling, as the zoo's
    convolutional networks split; a network that starts flat (an MLP) keeps all but its read-out as features, as
    the zoo's MLP does."""
    kinds = [layer.type for layer in spec.layers]
    split = next((i for i, kind in enumerate(kinds) if kind in ("flatten", "gap")), len(kinds))
    if split == 0:
        linear = [i for i, kind in enumerate(kinds) if kind == "linear"]
        split = linear[-1] if linear else len(kinds)
    return split


PARTS = ("features", "aux", "classifier")


@dataclass(frozen=True)
class Place:
    """Where a built network holds a layer: its part (``PARTS``) and its index there; an auxiliary head also
    has its tap, the feature whose output it hears (-1: the image itself)."""

    part: str
    index: int
    tap: int | None = None


def places(spec: Spec) -> list[Place]:
    """Each layer's place: before ``split_at`` in the features (an auxiliary head beside them), then in the
    classifier. SpecNet, the builder's costs and the exported script all hold the layers so."""
    split, counts, result = split_at(spec), dict.fromkeys(PARTS, 0), []
    for index, layer in enumerate(spec.layers):
        part = "classifier" if index >= split else "aux" if layer.type == "aux" else "features"
        result.append(Place(part, counts[part], counts["features"] - 1 if part == "aux" else None))
        counts[part] += 1
    return result


def parted(spec: Spec, items: list) -> dict[str, list]:
    """One item per layer (its module, its code), grouped by the layers' parts, in order."""
    held = places(spec)
    return {part: [item for item, place in zip(items, held, strict=True) if place.part == part] for part in PARTS}


class SpecNet(nn.Module):
    """The network of a spec: ``features`` up to the first flatten or global pooling, ``classifier`` from it, and
    the auxiliary heads (``aux``) that listen to the features in training, as GoogLeNet's do."""

    def __init__(self, spec: Spec, *, num_classes: int = NUM_CLASSES, in_channels: int = INPUT[0]) -> None:
        super().__init__()
        self.spec = spec
        shapes = [(in_channels, *INPUT[1:]), *check(spec, num_classes=num_classes,
                                                   in_shape=(in_channels, *INPUT[1:]))]
        modules = parted(spec, [_module(layer, shape, num_classes)
                                for layer, shape in zip(spec.layers, shapes, strict=False)])
        self.features = nn.Sequential(*modules["features"])
        self.aux = nn.ModuleList(modules["aux"])  # held between the two, as GoogLeNet holds its heads
        self.taps = tuple(place.tap for place in places(spec) if place.part == "aux")
        self.classifier = nn.Sequential(*modules["classifier"])
        self.init_weights()

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        he_init(self, generator)
        read_out = [m for m in self.modules() if isinstance(m, nn.Linear)]
        if read_out:  # a small read-out starts every class near equal probability, as in the zoo
            nn.init.normal_(read_out[-1].weight, std=0.01, generator=generator)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        if not (self.training and self.aux):
            return self.classifier(self.features(x))
        # In training, walk the features by hand to hear them where the heads listen; the trainer adds their
        # losses (core.training.AUX_LOSS_WEIGHT) to the scores' loss, the first of the outputs.
        extras = [head(x) for head, tap in zip(self.aux, self.taps, strict=True) if tap < 0]
        for index, feature in enumerate(self.features):
            x = feature(x)
            extras += [head(x) for head, tap in zip(self.aux, self.taps, strict=True) if tap == index]
        return self.classifier(x), *extras


def build(spec: Spec, *, num_classes: int = NUM_CLASSES, in_channels: int = INPUT[0]) -> SpecNet:
    return SpecNet(spec, num_classes=num_classes, in_channels=in_channels)


def over_budget(params: int, macs: int) -> Message | None:
    """What a network costs beyond the classroom budget, said with by how much; None within it."""
    if params > MAX_PARAMS:
        return Message("spec.too_many_params", params=params, most=MAX_PARAMS, over=params - MAX_PARAMS)
    if macs > MAX_MACS:
        return Message("spec.too_many_macs", macs=macs, most=MAX_MACS, over=macs - MAX_MACS)
    return None


def check_budget(network: Spec) -> None:
    """SpecError, saying by how much, for a network over the classroom budget."""
    from core.cost import count_macs, count_params

    model = build(network)
    over = over_budget(count_params(model), count_macs(model))
    if over:
        raise SpecError(over)


# --- templates: every classic of the zoo, as a spec --------------------------------------------------------

def _conv(channels: int, kernel: int, **settings: Any) -> dict[str, Any]:
    return {"type": "conv", "channels": channels, "kernel": kernel, **settings}


_RELU, _TANH, _FLAT = {"type": "relu"}, {"type": "tanh"}, {"type": "flatten"}


def _linear(units: int) -> dict[str, Any]:
    return {"type": "linear", "units": units}


def _conv_bn_relu(channels: int, kernel: int, **settings: Any) -> list[dict[str, Any]]:
    return [_conv(channels, kernel, bias=False, **settings), {"type": "batchnorm"}, _RELU]


def _lenet(activation: dict[str, Any], pool: str) -> list[dict[str, Any]]:
    return [_conv(6, 5, padding=2), activation, {"type": pool, "kernel": 2}, _conv(16, 5), activation,
            {"type": pool, "kernel": 2}, _conv(120, 5), activation, _FLAT, _linear(84), activation, _linear(10)]


_OVERLAPPING = {"type": "maxpool", "kernel": 3, "stride": 2, "padding": 1}
_LRN = {"type": "lrn"}


def _alexnet(first: dict[str, Any], second: dict[str, Any], *, pool_first: bool) -> list[dict[str, Any]]:
    normalise = [_OVERLAPPING, _LRN] if pool_first else [_LRN, _OVERLAPPING]  # ZFNet pools, then normalises
    return [first, _RELU, *normalise, second, _RELU, *normalise,
            _conv(96, 3, padding=1), _RELU, _conv(96, 3, padding=1), _RELU, _conv(64, 3, padding=1), _RELU,
            _OVERLAPPING, _FLAT, _linear(1024), _RELU, {"type": "dropout"}, _linear(1024), _RELU,
            {"type": "dropout"}, _linear(10)]


def _vgg(cfg: tuple[int | str, ...]) -> list[dict[str, Any]]:
    trunk = [v for c in cfg for v in ([{"type": "maxpool", "kernel": 2, "ceil": True}] if c == "M"
                                      else _conv_bn_relu(c, 3, padding=1))]
    return [*trunk, _FLAT, _linear(256), _RELU, {"type": "dropout"}, _linear(256), _RELU, {"type": "dropout"},
            _linear(10)]


def _separable(blocks: list[tuple[int, int]], channels: int = 16) -> list[dict[str, Any]]:
    """MobileNet's blocks: a 3x3 depthwise convolution (groups = channels), then a 1x1 pointwise one."""
    layers = []
    for out, stride in blocks:
        layers += [*_conv_bn_relu(channels, 3, stride=stride, padding=1, groups=channels), *_conv_bn_relu(out, 1)]
        channels = out
    return layers


def _residual(channels: int, stride: int = 1) -> dict[str, Any]:
    return {"type": "residual", "channels": channels, "stride": stride}


def _inception(*widths: int) -> dict[str, Any]:
    return {"type": "inception", **dict(zip(BRANCHES, widths, strict=True))}


def _googlenet() -> list[dict[str, Any]]:
    """GoogLeNet's nine modules at a quarter of the paper's widths, with its two heads after 4a and 4d."""
    pool, aux = _OVERLAPPING, {"type": "aux"}
    return [*_conv_bn_relu(16, 3, padding=1), pool, *_conv_bn_relu(16, 1), *_conv_bn_relu(48, 3, padding=1),
            _inception(16, 24, 32, 4, 8, 8), _inception(32, 32, 48, 8, 24, 16), pool,  # 3a, 3b at 14x14
            _inception(48, 24, 52, 4, 12, 16), aux, _inception(40, 28, 56, 6, 16, 16),  # 4a-4e at 7x7
            _inception(32, 32, 64, 6, 16, 16), _inception(28, 36, 72, 8, 16, 16), aux,
            _inception(64, 40, 80, 8, 32, 32), pool,
            _inception(64, 40, 80, 8, 32, 32), _inception(96, 48, 96, 12, 32, 32),  # 5a, 5b at 4x4
            {"type": "gap"}, {"type": "dropout", "p": 0.4}, _linear(10)]


TEMPLATES: dict[str, dict[str, Any]] = {
    "empty": {"version": VERSION, "name": "my-network", "layers": [_FLAT, _linear(10)]},
    "mlp": {"version": VERSION, "name": "my-mlp", "layers": [
        _FLAT, _linear(1024), _RELU, {"type": "dropout", "p": 0.2}, _linear(512), _RELU,
        {"type": "dropout", "p": 0.2}, _linear(10)]},
    "lenet5": {"version": VERSION, "name": "my-lenet5", "layers": _lenet(_TANH, "avgpool")},
    "lenet5-relu": {"version": VERSION, "name": "my-lenet5-relu", "layers": _lenet(_RELU, "maxpool")},
    "simple-cnn": {"version": VERSION, "name": "my-simple-cnn", "layers": [
        *_conv_bn_relu(32, 3), *_conv_bn_relu(32, 3), {"type": "maxpool", "kernel": 2}, *_conv_bn_relu(64, 3),
        *_conv_bn_relu(64, 3), {"type": "maxpool", "kernel": 2}, _FLAT, _linear(128), _RELU, {"type": "dropout"},
        _linear(10)]},
    "alexnet": {"version": VERSION, "name": "my-alexnet", "layers": _alexnet(
        _conv(24, 5, stride=2, padding=2), _conv(64, 5, padding=2), pool_first=False)},
    "zfnet": {"version": VERSION, "name": "my-zfnet", "layers": _alexnet(
        _conv(24, 3, padding=1), _conv(64, 5, stride=2, padding=2), pool_first=True)},
    # VGG's configurations A and E at a quarter of the paper's channels
    "vgg11": {"version": VERSION, "name": "my-vgg11", "layers": _vgg(
        (16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128, "M"))},
    "vgg19": {"version": VERSION, "name": "my-vgg19", "layers": _vgg(
        (16, 16, "M", 32, 32, "M", 64, 64, 64, 64, "M", 128, 128, 128, 128, "M", 128, 128, 128, 128, "M"))},
    "resnet18": {"version": VERSION, "name": "my-resnet18", "layers": [
        *_conv_bn_relu(12, 3, padding=1), _residual(12), _residual(12), _residual(24, 2), _residual(24),
        _residual(48, 2), _residual(48), _residual(96, 2), _residual(96), {"type": "gap"}, _linear(10)]},
    "mobilenet": {"version": VERSION, "name": "my-mobilenet", "layers": [
        *_conv_bn_relu(16, 3, padding=1), *_separable([(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2),
                                                       *[(256, 1)] * 5, (512, 2), (512, 1)]),
        {"type": "gap"}, _linear(10)]},
    "googlenet": {"version": VERSION, "name": "my-googlenet", "layers": _googlenet()},
}


# --- a built network in the registry ----------------------------------------------------------------------

_SPECS: dict[str, Spec] = {}  # the built networks registered in this process, by registry name


def architecture(spec: Spec) -> str:
    """The registry name of a spec: "spec-" and a hash of all it says, so one network has one name everywhere."""
    said = json.dumps(spec.as_json(), sort_keys=True, ensure_ascii=False)
    return SPEC_PREFIX + hashlib.sha256(said.encode()).hexdigest()[:12]


def specs_dir() -> Path:
    """Where built networks are kept: beside the runs that trained them, for every process of the server."""
    from core import checkpoints

    return checkpoints.runs_dir() / "specs"


def register(spec: Spec) -> str:
    """Check a spec, keep it with the runs (once) and put it in the registry, where ``get_model``, ``get_card``
    and every page take it like an architecture of the zoo. Returns its registry name."""
    check(spec)
    name = architecture(spec)
    path = specs_dir() / f"{name}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        partial.write_text(spec.dumps(), encoding="utf-8")
        os.replace(partial, path)  # whole or not at all: another process may read it at once
    _register(name, spec)
    return name


def register_stored(name: str) -> None:
    """Register the built network ``name`` from its kept spec; nothing if this machine keeps none by that name
    (the registry then calls it unknown)."""
    try:
        stored = parse((specs_dir() / f"{name}.json").read_bytes())
    except (OSError, SpecError):
        return
    if architecture(stored) == name:  # a file edited by hand is not the network its name says
        _register(name, stored)


def stored_spec(name: str) -> Spec:
    """The spec of a registered built network, e.g. to load it back into the builder."""
    get_card(name)  # registers it from its file if need be, or says it is unknown
    return _SPECS[name]


def _register(name: str, spec: Spec) -> None:
    if name in _SPECS:
        return
    kinds = [layer.type for layer in spec.layers]
    card = ModelCard(name=name, title=spec.name, year=datetime.date.today().year, paper=Message("spec.card_paper"),
                     summary=Message("spec.card_summary", layers=len(kinds)),
                     ideas=(Message("spec.card_stack", stack=" → ".join(kinds)),),
                     paper_params=Message("spec.card_original"))

    def builder(*, num_classes: int = NUM_CLASSES, in_channels: int = INPUT[0], width: float = 1.0) -> SpecNet:
        if width != 1.0:
            raise ValueError(Message("spec.no_width", width=width))
        return build(spec, num_classes=num_classes, in_channels=in_channels)

    register_model(card)(builder)
    _SPECS[name] = spec


# --- the builder's table: a spec as rows of one column per setting ------------------------------------------

COLUMNS = ("type", *dict.fromkeys(name for settings in SETTINGS.values() for name in settings))


# What a layer added in the builder starts with where its type has no default: a small, valid choice to edit.
STARTER: dict[str, dict[str, Any]] = {
    "conv": {"channels": 8, "kernel": 3, "padding": 1}, "maxpool": {"kernel": 2}, "avgpool": {"kernel": 2},
    "linear": {"units": 10}, "residual": {"channels": 16},
    "inception": dict(zip(BRANCHES, (8, 8, 16, 4, 8, 8), strict=True))}


def new_row(kind: str) -> dict[str, Any]:
    """The builder's row of a new layer of type ``kind``: its defaults, and STARTER where it has none."""
    settings = {k: v for k, v in SETTINGS[kind].items() if v is not REQUIRED} | STARTER.get(kind, {})
    return {"type": kind, **{column: settings.get(column) for column in COLUMNS[1:]}}


def rows(network: Spec) -> list[dict[str, Any]]:
    """One row per layer, every setting of every type a column (None where the layer has no such setting)."""
    return [{"type": layer.type, **{column: layer.settings.get(column) for column in COLUMNS[1:]}}
            for layer in network.layers]


def from_rows(table: list[Mapping[str, Any]], name: str) -> Spec:
    """The spec of the builder's rows: a blank cell is the setting's default; SpecError as ``parse`` says it."""
    layers = []
    for row in table:
        kind = row.get("type")
        layer: dict[str, Any] = {"type": kind}
        for setting in SETTINGS.get(kind, {}):
            value = row.get(setting)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if isinstance(value, float) and value.is_integer() and setting not in ("p", "alpha", "beta", "k"):
                value = int(value)  # a table column of numbers holds floats
            layer[setting] = value
        layers.append(layer)
    return parse({"version": VERSION, "name": name, "layers": layers})


@dataclass(frozen=True)
class LayerCost:
    output_shape: Shape
    params: int
    macs: int  # per image


def layer_costs(network: Spec) -> list[LayerCost]:
    """Each layer's output shape, parameters and MACs, from the counter every zoo model is measured with
    (``cost.layer_summary``); SpecError if the spec cannot be built."""
    from core.cost import layer_summary

    model = build(network)
    costs = {row.name: row for row in layer_summary(model, depth=2)}
    result, shape = [], INPUT
    for place in places(network):
        row = costs[f"{place.part}.{place.index}"]
        shape = row.output_shape or shape  # an auxiliary head runs in training only; the maps pass it unchanged
        result.append(LayerCost(shape, row.params, row.macs))
    return result
