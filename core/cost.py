"""What a network costs: parameters, multiply-accumulates and memory, in all and layer by layer."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core.models import evaluating, get_model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 1, 28, 28)) -> int:
    """Multiply-accumulates for one forward pass, from torch's own flop counter (1 MAC = 2 flops)."""
    x = torch.zeros(input_size, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    with evaluating(model), counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2 // input_size[0]


@cache
def architecture_size(name: str, *, num_classes: int = 10, width: float = 1.0) -> tuple[int, int]:
    """(parameters, MACs per 28x28 image) of a registry architecture at its classroom scale."""
    model = get_model(name, num_classes=num_classes, width=width)
    return count_params(model), count_macs(model)


@cache
def weights_megabytes(arch: str, num_classes: int, width: float) -> float:
    """Megabytes of a registry architecture's tensors as float32 (shipped float16 files hold half)."""
    model = get_model(arch, num_classes=num_classes, width=width)
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6


@dataclass
class Layer:
    name: str  # its path in the model, e.g. "features.0"
    kind: str  # its class, e.g. "Conv2d"
    output_shape: tuple[int, ...] | None  # for one image; None if it does not run at inference
    params: int  # its own and its children's
    macs: int  # per image, its own and its children's


@torch.no_grad()
def layer_summary(
    model: nn.Module, *, depth: int | None = None, input_size: tuple[int, ...] = (1, 1, 28, 28)
) -> list[Layer]:
    """The modules ``depth`` levels down (leaves higher up included; all the leaves if None), in order.

    Output shapes come from forward hooks, MACs from torch's flop counter, which charges each
    operation to every module it runs in. Modules that run only in training (GoogLeNet's auxiliary
    heads) have no output shape.
    """
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")

    def chosen(name: str, module: nn.Module) -> bool:
        level, leaf = name.count(".") + 1, not any(True for _ in module.children())
        return (leaf and (depth is None or level <= depth)) or level == depth

    modules = [(name, module) for name, module in model.named_modules() if name and chosen(name, module)]
    shapes: dict[str, tuple[int, ...]] = {}

    def record_shape(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor | tuple) -> None:
            tensor = output[0] if isinstance(output, tuple) else output
            shapes[name] = tuple(tensor.shape[1:])

        return hook

    handles = [module.register_forward_hook(record_shape(name)) for name, module in modules]
    counter = FlopCounterMode(display=False)
    try:
        with evaluating(model), counter:
            model(torch.zeros(input_size, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    # The counter names modules by their path under the root's class name: "ResNet.features.0".
    flops = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    return [
        Layer(name, type(module).__name__, shapes.get(name), count_params(module),
              flops.get(f"{root}.{name}", 0) // 2 // input_size[0])
        for name, module in modules
    ]
