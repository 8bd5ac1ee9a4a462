"""Drawn and uploaded pictures prepared the way MNIST was."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core import data, preprocess
from core.training import TrainConfig, evaluate, train

CANVAS = 280


@pytest.fixture(scope="module")
def lenet():
    """A LeNet trained here on a few thousand images (with augmentation, as the recipes do)."""
    config = TrainConfig(arch="lenet5-relu", epochs=4, limit=5000, lr=5e-3, batch_size=64, val_split=0.0)
    return train(config).model.eval()


@pytest.fixture(scope="module")
def digits(mnist_test):
    return mnist_test.subset(slice(0, 300))


def redraw(image: torch.Tensor, *, size: int, top: int, left: int, thickness: int = 0, invert: bool = False,
           transparent: bool = False) -> np.ndarray:
    """An MNIST digit drawn again on a 280x280 RGBA canvas, at another size, place and stroke width."""
    x = F.interpolate(image.float()[None, None] / 255, size=(size, size), mode="bilinear", align_corners=False)
    if thickness:
        x = F.max_pool2d(x, 2 * thickness + 1, stride=1, padding=thickness)
    canvas = torch.zeros(CANVAS, CANVAS)
    canvas[top : top + size, left : left + size] = x[0, 0]
    ink = (canvas * 255).round().to(torch.uint8).numpy()
    if transparent:  # white pen on a transparent canvas: the ink lives in the alpha channel
        return np.dstack([np.full_like(ink, 255)] * 3 + [ink])
    grey = 255 - ink if invert else ink
    return np.dstack([grey] * 3 + [np.full_like(grey, 255)])


def accuracy(model, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return 100 * (model(inputs).argmax(1) == labels).float().mean().item()


@pytest.mark.parametrize(
    "how",
    [dict(size=250, top=10, left=20), dict(size=90, top=12, left=175), dict(size=160, top=100, left=5),
     dict(size=200, top=40, left=40, thickness=3), dict(size=180, top=50, left=60, invert=True),
     dict(size=140, top=130, left=130, transparent=True)],
    ids=["large", "small-top-right", "bottom-left", "thick", "dark-on-light", "transparent"],
)
def test_redrawn_digits_are_classified_as_well_as_the_originals(lenet, digits, how):
    original = evaluate(lenet, digits, "mnist").accuracy
    prepared = torch.cat([preprocess.prepare(redraw(img, **how)).tensor("mnist") for img in digits.images])
    assert prepared.shape == (300, 1, 28, 28)
    assert accuracy(lenet, prepared, digits.labels) >= original - 2


def test_the_naive_resize_fails_where_the_recipe_works(lenet, digits):
    pictures = [redraw(img, size=90, top=12, left=175) for img in digits.images]
    naive = torch.cat([preprocess.prepare(p, naive=True).tensor("mnist") for p in pictures])
    mnist_style = torch.cat([preprocess.prepare(p).tensor("mnist") for p in pictures])
    assert accuracy(lenet, naive, digits.labels) < accuracy(lenet, mnist_style, digits.labels) - 30


def test_stages_follow_the_recipe(digits):
    stages = preprocess.prepare(redraw(digits.images[0], size=120, top=20, left=30, invert=True))
    assert stages.inverted and stages.raw.shape == (CANVAS, CANVAS)
    assert stages.raw.max() <= 1 and stages.raw[0, 0] == 0  # paper dark, ink bright, as in MNIST
    assert max(stages.scaled.shape) == 20
    assert stages.centred.shape == (28, 28)
    ys, xs = np.indices((28, 28))
    mass = stages.centred.sum()
    assert abs((stages.centred * ys).sum() / mass - 13.5) <= 1
    assert abs((stages.centred * xs).sum() / mass - 13.5) <= 1
    x = stages.tensor("mnist")
    assert x.shape == (1, 1, 28, 28) and x.min().item() == pytest.approx(data.background("mnist"))


@pytest.mark.parametrize(
    "picture",
    [np.zeros((CANVAS, CANVAS, 4), np.uint8),  # nothing drawn, transparent
     np.dstack([np.zeros((CANVAS, CANVAS), np.uint8)] * 3 + [np.full((CANVAS, CANVAS), 255, np.uint8)]),
     np.full((CANVAS, CANVAS, 4), 255, np.uint8)],  # a full white canvas
    ids=["empty-transparent", "empty-black", "full-white"],
)
def test_blank_pictures_are_not_digits(picture):
    stages = preprocess.prepare(picture)
    assert stages.empty
    with pytest.raises(ValueError, match="no digit"):
        stages.tensor("mnist")


def test_a_dot_is_not_a_digit():
    picture = np.zeros((CANVAS, CANVAS), np.uint8)
    picture[140, 140] = 255
    assert preprocess.prepare(picture).empty
    picture[130:150, 130:150] = 255  # a blob: still too small to be a digit
    assert preprocess.prepare(picture).empty


def test_faint_noise_is_ignored(digits):
    rng = np.random.default_rng(0)
    picture = redraw(digits.images[0], size=150, top=60, left=60)
    noisy = picture.copy()
    noisy[..., :3] = np.maximum(noisy[..., :3], rng.integers(0, 40, (CANVAS, CANVAS, 1), dtype=np.uint8))
    clean, dirty = preprocess.prepare(picture), preprocess.prepare(noisy)
    assert dirty.cropped.shape == clean.cropped.shape


def png(array: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format)
    return buffer.getvalue()


def test_uploads_are_read_and_bad_ones_refused(digits):
    picture = redraw(digits.images[0], size=150, top=60, left=60)
    assert preprocess.read_image(png(picture)).shape == (CANVAS, CANVAS, 4)
    assert preprocess.read_image(png(picture[..., :3], "JPEG")).shape == (CANVAS, CANVAS, 4)
    with pytest.raises(preprocess.ImageError, match="notes.txt is not a picture"):
        preprocess.read_image(b"these are my notes, not a digit", name="notes.txt")
    with pytest.raises(preprocess.ImageError, match="GIF file; upload a PNG or JPEG"):
        preprocess.read_image(png(picture[..., 0], "GIF"))
    with pytest.raises(preprocess.ImageError, match="MB are accepted"):
        preprocess.read_image(b"\x89PNG" + bytes(preprocess.MAX_UPLOAD_BYTES))
    truncated = png(picture)[:200]
    with pytest.raises(preprocess.ImageError, match="not a picture that can be read"):
        preprocess.read_image(truncated)
