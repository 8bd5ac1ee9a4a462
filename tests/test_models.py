"""The zoo, tested through its registry: every architecture in one parametrised sweep, then the ideas
each family must keep, then the registry itself."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import core.models as registry
from core.cost import count_macs, count_params
from core.models import ModelCard, get_card, get_model, list_models, register_model, use_dropout_generator
from core.models._utils import Dropout
from core.models.googlenet import GoogLeNetOutputs, googlenet
from core.models.resnet import BasicBlock

MAX_PARAMS = 5_000_000  # per model at width 1, 28x28x1
MAX_MACS = 25_000_000  # multiply-accumulates per image, same scale
ZOO = ["mlp", "lenet5", "lenet5-relu", "simple-cnn", "alexnet", "zfnet", "vgg11", "vgg19", "googlenet",
       "resnet18", "mobilenet"]


def _images(n: int = 2, channels: int = 1) -> torch.Tensor:
    return torch.randn(n, channels, 28, 28, generator=torch.Generator().manual_seed(1))


def _outputs(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, tuple) else (out,)


# --- every architecture ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = get_model(name).train()
    outputs = _outputs(model(_images()))
    for out in outputs:
        assert out.shape == (2, 10)
        assert torch.isfinite(out).all()
    sum(out.sum() for out in outputs).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"


@pytest.mark.parametrize("name", list_models())
def test_budget(name: str) -> None:
    model = get_model(name)
    assert 0 < count_params(model) <= MAX_PARAMS
    assert 0 < count_macs(model) <= MAX_MACS


@pytest.mark.parametrize("name", list_models())
def test_deterministic_with_seed(name: str) -> None:
    x = _images()
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = get_model(name).eval()
        with torch.no_grad():
            results.append(model(x))
    assert torch.equal(*results)


@pytest.mark.parametrize("name", list_models())
def test_a_generator_draws_the_same_weights_as_seeding_torch_and_leaves_torch_alone(name: str) -> None:
    # The same draws in the same order as PyTorch's own layers and the family's init: the strongest check
    # that every parameter keeps its distribution (issue 14 moved the trainers onto their own generators).
    torch.manual_seed(3)
    expected = get_model(name, width=0.5).state_dict()
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    seeded = get_model(name, width=0.5, generator=torch.Generator().manual_seed(3)).state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    assert seeded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(seeded[key], value), key


@pytest.mark.parametrize("name", list_models())
def test_features_then_classifier(name: str) -> None:
    model = get_model(name).eval()
    assert isinstance(model.features, nn.Module) and isinstance(model.classifier, nn.Module)
    x = _images()
    with torch.no_grad():
        assert torch.equal(model(x), model.classifier(model.features(x)))


@pytest.mark.parametrize("name", list_models())
def test_classes_and_channels(name: str) -> None:
    model = get_model(name, num_classes=26, in_channels=3).eval()
    with torch.no_grad():
        assert model(_images(channels=3)).shape == (2, 26)


@pytest.mark.parametrize("name", list_models())
def test_width_thins_the_model(name: str) -> None:
    thin = get_model(name, width=0.5)
    assert count_params(thin) < count_params(get_model(name))
    with torch.no_grad():
        assert thin.eval()(_images()).shape == (2, 10)


# --- the ideas each family keeps ------------------------------------------------------------------


def _layers(name: str, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in get_model(name).modules() if isinstance(m, kind)]


def test_googlenet_aux_heads_only_in_training() -> None:
    x = _images()
    model = googlenet()
    out = model.train()(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert len(out) == 3
    assert all(t.shape == (2, 10) for t in out)
    assert out.logits is out[0]
    assert isinstance(model.eval()(x), torch.Tensor)
    assert isinstance(googlenet(aux_logits=False).train()(x), torch.Tensor)


def test_googlenet_without_aux_has_no_aux_weights() -> None:
    assert count_params(googlenet(aux_logits=False)) < count_params(googlenet())


def test_lenet5_is_tanh_and_average_pooling() -> None:
    assert _layers("lenet5", nn.Tanh) and _layers("lenet5", nn.AvgPool2d)
    assert not _layers("lenet5", nn.ReLU) and not _layers("lenet5", nn.MaxPool2d)
    assert [c.out_channels for c in _layers("lenet5", nn.Conv2d)] == [6, 16, 120]


def test_lenet5_relu_is_relu_and_max_pooling() -> None:
    assert _layers("lenet5-relu", nn.ReLU) and _layers("lenet5-relu", nn.MaxPool2d)
    assert not _layers("lenet5-relu", nn.Tanh) and not _layers("lenet5-relu", nn.AvgPool2d)


def test_alexnet_has_lrn_and_overlapping_pooling() -> None:
    assert _layers("alexnet", nn.LocalResponseNorm)
    pools = _layers("alexnet", nn.MaxPool2d)
    assert pools and all(p.kernel_size == 3 and p.stride == 2 for p in pools)


def test_zfnet_first_conv_is_finer_than_alexnet() -> None:
    alex, zf = _layers("alexnet", nn.Conv2d)[0], _layers("zfnet", nn.Conv2d)[0]
    assert zf.kernel_size[0] < alex.kernel_size[0]
    assert zf.stride[0] <= alex.stride[0]
    assert _layers("zfnet", nn.LocalResponseNorm)


@pytest.mark.parametrize("name", ["vgg11", "vgg19"])
def test_vgg_is_3x3_convs_and_2x2_pools(name: str) -> None:
    convs = _layers(name, nn.Conv2d)
    assert len(convs) == {"vgg11": 8, "vgg19": 16}[name]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert all(p.kernel_size == 2 for p in _layers(name, nn.MaxPool2d))


def test_resnet_has_identity_and_projection_shortcuts() -> None:
    blocks = _layers("resnet18", BasicBlock)
    assert len(blocks) == 8
    projections = [b.downsample for b in blocks if b.downsample is not None]
    assert len(projections) == 3  # where stages 2, 3 and 4 halve the map
    assert all(p[0].kernel_size == (1, 1) and p[0].stride == (2, 2) for p in projections)


def test_mobilenet_has_depthwise_convs() -> None:
    depthwise = [c for c in _layers("mobilenet", nn.Conv2d) if c.groups > 1]
    assert len(depthwise) == 13
    assert all(c.groups == c.in_channels == c.out_channels for c in depthwise)


def test_dropout_scales_what_it_keeps_in_training_and_is_the_identity_in_eval() -> None:
    dropout = Dropout(0.25)
    x = torch.rand(64, 512) + 1
    y = dropout.train()(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75)
    assert 0.70 < kept.float().mean() < 0.80
    assert torch.equal(dropout.eval()(x), x)
    with pytest.raises(ValueError, match="dropout probability must be in"):
        Dropout(1.0)


def test_dropout_masks_come_from_the_generator_it_is_given() -> None:
    model = get_model("alexnet", width=0.25).train()
    x = _images(8)

    def outputs_with_torch_seeded(seed: int) -> torch.Tensor:
        use_dropout_generator(model, torch.Generator().manual_seed(0))
        torch.manual_seed(seed)
        return model(x)

    assert torch.equal(outputs_with_torch_seeded(1), outputs_with_torch_seeded(2))
    use_dropout_generator(model, None)  # back to torch's global generator, as nn.Dropout
    torch.manual_seed(1)
    first = model(x)
    torch.manual_seed(1)
    assert torch.equal(model(x), first)
    assert not torch.equal(model(x), first)


# --- the registry ---------------------------------------------------------------------------------


def test_zoo_order() -> None:
    assert list_models() == ZOO


def test_unknown_name_names_the_choices() -> None:
    with pytest.raises(ValueError, match="nope.*resnet18"):
        get_model("nope")
    with pytest.raises(ValueError, match="nope"):
        get_card("nope")


def test_width_must_be_positive() -> None:
    with pytest.raises(ValueError, match="width"):
        get_model("mlp", width=0)


@pytest.mark.parametrize("name", list_models())
def test_card(name: str) -> None:
    card = get_card(name)
    assert card.name == name
    assert card.title and card.paper and card.summary and card.paper_params
    assert 1980 <= card.year <= 2030
    assert 3 <= len(card.ideas) <= 5 and all(card.ideas)


def test_duplicate_name_raises() -> None:
    builders, cards = dict(registry._BUILDERS), dict(registry._CARDS)
    card = ModelCard(name="mlp", title="t", year=2000, paper="p", summary="s", ideas=("a", "b", "c"),
                     paper_params="x")
    try:
        with pytest.raises(ValueError, match="mlp"):
            register_model(card)(lambda **kwargs: nn.Identity())
    finally:
        registry._BUILDERS.clear()
        registry._BUILDERS.update(builders)
        registry._CARDS.clear()
        registry._CARDS.update(cards)
    assert list_models() == ZOO
