"""Looking inside networks: stages and feature maps, filters, saliency, Grad-CAM, occlusion, channels."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from core import data, explain
from core.models import get_model, list_models
from core.training import TrainConfig, Trainer


def fresh(arch: str) -> nn.Module:
    """A seeded new model, left in train mode on purpose: inspecting must neither need nor change eval mode."""
    torch.manual_seed(0)
    return get_model(arch)


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def trunk_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The forward pass by hand, without hooks: every child of the trunk's output, by its path."""
    was_training = model.training
    model.eval()
    outputs, h = {}, x
    with torch.no_grad():
        for name, child in model.features.named_children():
            h = child(h)
            outputs[f"features.{name}"] = h.clone()
        outputs["logits"] = model.classifier(h)
    model.train(was_training)
    return outputs


@pytest.fixture(scope="module")
def digits(mnist_test) -> torch.Tensor:
    return data.normalize(mnist_test.images[:8], "mnist")


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """A LeNet (ReLU) trained for two epochs on 4000 images, about 3 s: something real to look at."""
    config = TrainConfig(arch="lenet5-relu", epochs=2, batch_size=64, lr=1e-2, augment=False, val_split=0,
                         limit=4000, patience=0, seed=0)
    result = Trainer(config, device="cpu").fit()
    assert result.test_accuracy > 90
    return result.model.eval()


@pytest.mark.parametrize("arch", list_models())
def test_stages_are_found_and_their_maps_match_a_forward_pass(arch, digits):
    model = fresh(arch)
    x = digits[:1]
    stages = explain.find_stages(model)
    assert stages, f"{arch}: no stages found"
    assert len({s.name for s in stages}) == len(stages)

    probabilities, maps = explain.feature_maps(model, x)
    expected = trunk_outputs(model, x)
    assert [m.stage for m in maps] == stages
    assert torch.allclose(probabilities, expected["logits"].softmax(1)[0], atol=1e-5)
    for feature_map in maps:
        by_hand = expected[feature_map.stage.name][0]
        assert feature_map.values.shape == by_hand.shape
        assert torch.allclose(feature_map.values, by_hand, atol=1e-5)
        assert feature_map.maps.shape[0] == feature_map.means.shape[0]
    # Convolutional models have maps; the MLP's stages are its hidden layers of units.
    assert any(m.convolutional for m in maps) == has_conv(model)
    assert hooks_left(model) == 0 and model.training


def test_stage_titles_read_like_the_architecture():
    titles = {arch: [s.title for s in explain.find_stages(fresh(arch))] for arch in ("lenet5", "mlp", "googlenet")}
    assert titles["lenet5"] == ["conv 5x5", "conv 5x5", "conv 5x5"]
    assert titles["mlp"] == ["linear 1024", "linear 512"]
    assert titles["googlenet"][:2] == ["stem", "inception3a"] and titles["googlenet"][-1] == "inception5b"


def test_a_forward_from_another_thread_does_not_leak_into_the_maps(digits):
    # Models are shared by every browser session: another session's forward may run while ours does.
    model = fresh("lenet5").eval()
    x, other = digits[:1], digits[1:2]

    def meddle(module, args):
        if threading.current_thread() is threading.main_thread():
            worker = threading.Thread(target=lambda: model(other))
            worker.start()
            worker.join()

    handle = model.classifier.register_forward_pre_hook(meddle)  # after every stage has been read
    try:
        _, maps = explain.feature_maps(model, x)
    finally:
        handle.remove()
    expected = trunk_outputs(model, x)
    for feature_map in maps:
        assert torch.allclose(feature_map.values, expected[feature_map.stage.name][0], atol=1e-5)


@pytest.mark.parametrize("arch", list_models())
def test_saliency_and_grad_cam_work_for_every_architecture(arch, digits):
    model = fresh(arch)
    x = digits[:1]
    gradient = explain.saliency(model, x, target=3)
    assert gradient.shape == x.shape
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    if has_conv(model):
        cam, stage = explain.grad_cam(model, x, target=3)
        assert cam.shape == (28, 28) and torch.isfinite(cam).all()
        assert cam.min() >= 0 and cam.max() <= 1
        assert stage in explain.find_stages(model)
    else:
        with pytest.raises(ValueError, match="no convolutional stage"):
            explain.grad_cam(model, x)
    assert hooks_left(model) == 0 and model.training


def test_saliency_is_the_gradient_of_the_class_score():
    # A finite difference along a random direction, in double precision on the smooth (tanh) LeNet.
    model = fresh("lenet5").double().eval()
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    gradient = explain.saliency(model, x, target=4)
    eps = 1e-5
    with torch.no_grad():
        numeric = (model(x + eps * direction)[0, 4] - model(x - eps * direction)[0, 4]) / (2 * eps)
    assert (gradient * direction).sum().item() == pytest.approx(numeric.item(), rel=1e-4)


def test_grad_cam_skips_a_one_by_one_stage_and_can_be_given_one(digits):
    model = fresh("lenet5")
    _, stage = explain.grad_cam(model, digits[:1])
    assert stage.name == "features.4"  # C3 (10 x 10), not C5 (1 x 1)
    _, stage = explain.grad_cam(model, digits[:1], stage="features.1")
    assert stage.name == "features.1"
    with pytest.raises(ValueError, match="no stage 'features.2'"):
        explain.grad_cam(model, digits[:1], stage="features.2")


def test_occlusion_is_highest_on_the_ink_and_nothing_on_a_blank_corner(trained, mnist_test):
    for i in range(8):
        image, label = mnist_test.images[i], int(mnist_test.labels[i])
        x = data.normalize(image[None], "mnist")
        drop = explain.occlusion(trained, x, label, patch=4, stride=2)
        assert drop.shape == (28, 28) and torch.isfinite(drop).all()
        ink = image > 0
        assert not ink[:4, :4].any()
        assert drop[:2, :2].abs().max() < 0.01  # only the patch over the blank corner covers these
        row, col = divmod(int(drop.argmax()), 28)
        assert ink[max(0, row - 3) : row + 4, max(0, col - 3) : col + 4].any(), f"digit {i}: peak off the ink"
        assert drop[ink].mean() > 3 * drop[~ink].mean()
        # A patch of blank paper over blank paper is no change at all.
        paper = explain.occlusion(trained, x, label, fill=data.background("mnist"))
        assert paper[:2, :2].abs().max() < 1e-6


def test_occlusion_is_one_forward_pass_and_exact(trained, digits):
    x = digits[:1]
    sizes = []
    handle = trained.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    try:
        explain.occlusion(trained, x, patch=4, stride=2)
    finally:
        handle.remove()
    assert sizes == [1 + 13 * 13]  # the intact input and every position of the patch

    # Four positions of a 27x27 patch: a corner pixel is hidden by one of them, the centre by all four.
    drop = explain.occlusion(trained, x, 7, patch=27, stride=1, fill=0.0)
    hidden = x.repeat(4, 1, 1, 1)
    for i, (top, left) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        hidden[i, :, top : top + 27, left : left + 27] = 0.0
    with torch.no_grad():
        p = trained(torch.cat([x, hidden])).softmax(1)[:, 7]
    drops = p[0] - p[1:]
    assert drop[0, 0].item() == pytest.approx(drops[0].item(), abs=1e-6)
    assert drop[27, 27].item() == pytest.approx(drops[3].item(), abs=1e-6)
    assert drop[14, 14].item() == pytest.approx(drops.mean().item(), abs=1e-6)
    # A stride that does not tile the image still covers its last rows and columns.
    assert torch.isfinite(explain.occlusion(trained, x, patch=5, stride=3)).all()
    with pytest.raises(ValueError, match="patch must be between 1 and 28"):
        explain.occlusion(trained, x, patch=0)


def test_first_layer_filters_are_the_first_layers_weights():
    lenet = fresh("lenet5")
    filters = explain.first_layer_filters(lenet)
    assert torch.equal(filters, lenet.features[0].weight.detach()[:, 0])
    mlp = fresh("mlp")
    templates = explain.first_layer_filters(mlp)
    assert templates.shape == (1024, 28, 28)
    assert torch.equal(templates[3].flatten(), mlp.features[1].weight.detach()[3])
    for arch in list_models():
        assert explain.first_layer_filters(fresh(arch)) is not None, arch


def test_top_images_and_a_grown_pattern_excite_their_channel(trained, mnist_test):
    images = data.normalize(mnist_test.images[:1000], "mnist")
    stage = "features.4"  # C3 of the LeNet: 16 maps of 10 x 10
    by_hand = trunk_outputs(trained, images)[stage]
    for channel in (0, 5):
        scores = by_hand[:, channel].mean(dim=(1, 2))
        indices, values = explain.top_images(trained, stage, channel, images, k=5, batch_size=300)
        assert torch.equal(indices, scores.topk(5).indices)
        assert torch.allclose(values, scores.topk(5).values, atol=1e-5)

        pattern = explain.maximise_channel(trained, stage, channel, steps=150)
        assert pattern.shape == (28, 28) and pattern.min() >= 0 and pattern.max() <= 1
        grown = trunk_outputs(trained, explain.as_input(pattern, "mnist"))[stage][0, channel].mean()
        assert grown > scores.max(), f"channel {channel}: the pattern excites it less than a test digit"
    assert hooks_left(trained) == 0
    with pytest.raises(ValueError, match="has 16 channels"):
        explain.top_images(trained, stage, 16, images[:10])


def test_look_inside_is_one_forward_pass_with_the_answer_maps_and_filters(trained, mnist_test):
    # Every view of the Inside page shows it, so it must stay cheap; the costly views are calls of their own.
    x = data.normalize(mnist_test.images[1:2], "mnist")  # a 2
    passes = []
    handle = trained.register_forward_pre_hook(lambda module, inputs: passes.append(len(inputs[0])))
    try:
        inside = explain.look_inside(trained, x)
    finally:
        handle.remove()
    assert passes == [1]
    assert inside.answer == inside.target == 2
    assert [m.stage.name for m in inside.maps] == ["features.1", "features.4", "features.7"]
    assert inside.filters.shape == (6, 5, 5)
    assert explain.look_inside(trained, x, target=5).target == 5
    with pytest.raises(ValueError, match="target class 10"):
        explain.look_inside(trained, x, target=10)
    with pytest.raises(ValueError, match="expected one input"):
        explain.look_inside(trained, data.normalize(mnist_test.images[:2], "mnist"))
    mlp = explain.look_inside(fresh("mlp"), x)
    assert not any(m.convolutional for m in mlp.maps) and mlp.filters.shape == (1024, 28, 28)


def test_the_saliency_map_is_the_gradients_size_as_a_picture(trained, mnist_test):
    x = data.normalize(mnist_test.images[1:2], "mnist")
    picture = explain.saliency_map(trained, x, 2)
    assert picture.shape == (28, 28)
    assert torch.equal(picture, explain.saliency(trained, x, 2)[0, 0].abs())  # one input channel
    with pytest.raises(ValueError, match="target class 10"):
        explain.saliency_map(trained, x, 10)


def test_a_drawing_and_a_test_image_become_the_same_input(mnist_test):
    image = mnist_test.images[0]
    expected = data.normalize(image[None], "mnist")
    assert torch.equal(explain.as_input(image.numpy(), "mnist"), expected)
    assert torch.equal(explain.as_input(image.numpy() / 255, "mnist"), expected)


def test_mosaic_tiles_maps_with_gaps_and_units_without():
    maps = torch.arange(6 * 4 * 4, dtype=torch.float32).reshape(6, 4, 4)
    grid, channel = explain.mosaic(maps)
    assert grid.shape == (2 * 4 + 1, 3 * 4 + 2)  # tiles and one-pixel gaps
    assert channel[0, 0] == 0 and channel[0, 5] == 1 and channel[5, 0] == 3 and channel[4, 0] == -1
    assert grid[5, 5] == maps[4, 0, 0]
    units, channel = explain.mosaic(torch.ones(1024, 1, 1))
    assert units.shape == (32, 32) and (channel >= 0).all()
