"""core/cost.py: parameter and MAC counts by hand and by formula, layer by layer."""

from __future__ import annotations

import pytest
from torch import nn

from core import cost
from core.models import get_model


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=3),  # 4 x 26 x 26
        nn.ReLU(),
        nn.MaxPool2d(2),  # 4 x 13 x 13
        nn.Flatten(),  # 676
        nn.Linear(4 * 13 * 13, 10),
    )


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU(), nn.Linear(32, 10))


def test_parameter_counts_equal_a_hand_count():
    assert cost.count_params(tiny_cnn()) == (4 * 1 * 3 * 3 + 4) + (676 * 10 + 10)  # 6,810
    assert cost.count_params(tiny_mlp()) == (784 * 32 + 32) + (32 * 10 + 10)  # 25,450


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "kernel", "stride", "padding", "groups"),
    [(1, 6, 5, 1, 2, 1), (8, 16, 3, 2, 1, 1), (8, 8, 3, 1, 1, 8), (4, 12, 1, 1, 0, 2)],
)
def test_macs_of_one_conv_layer_follow_the_formula(in_channels, out_channels, kernel, stride, padding, groups):
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups)
    side = (28 + 2 * padding - kernel) // stride + 1
    expected = out_channels * side * side * (in_channels // groups) * kernel * kernel
    assert cost.count_macs(conv, input_size=(1, in_channels, 28, 28)) == expected
    assert cost.count_macs(conv, input_size=(4, in_channels, 28, 28)) == expected  # per image


def test_macs_of_small_models_are_their_layers_sums():
    assert cost.count_macs(tiny_mlp()) == 784 * 32 + 32 * 10
    assert cost.count_macs(tiny_cnn()) == 4 * 26 * 26 * 9 + 676 * 10


def test_layer_summary_of_a_small_cnn():
    layers = cost.layer_summary(tiny_cnn())
    assert [(l.name, l.kind) for l in layers] == [("0", "Conv2d"), ("1", "ReLU"), ("2", "MaxPool2d"),
                                                   ("3", "Flatten"), ("4", "Linear")]
    assert [l.output_shape for l in layers] == [(4, 26, 26), (4, 26, 26), (4, 13, 13), (676,), (10,)]
    assert [l.params for l in layers] == [40, 0, 0, 0, 6770]
    assert [l.macs for l in layers] == [4 * 26 * 26 * 9, 0, 0, 0, 6760]


def test_layer_summary_depth_groups_blocks_and_marks_training_only_heads():
    model = get_model("googlenet")
    top = cost.layer_summary(model, depth=1)
    assert [l.name for l in top] == [name for name, _ in model.named_children()]
    assert sum(l.params for l in top) == cost.count_params(model)
    assert sum(l.macs for l in top) == cost.count_macs(model)
    heads = {l.name: l for l in top if l.name.startswith("aux")}
    assert heads and all(l.output_shape is None and l.params > 0 for l in heads.values())
    assert next(l for l in top if l.name == "classifier").output_shape == (10,)
    leaves = cost.layer_summary(model)
    assert len(leaves) > len(cost.layer_summary(model, depth=2)) > len(top)
    assert sum(l.params for l in leaves) == cost.count_params(model)
    with pytest.raises(ValueError, match="depth must be at least 1"):
        cost.layer_summary(model, depth=0)
