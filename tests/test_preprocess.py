"""Drawn and uploaded pictures prepared the way MNIST was."""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core import checkpoints, data, preprocess
from core.training import evaluate

CANVAS = 280


@pytest.fixture(scope="module")
def lenet():
    """The shipped LeNet-5-ReLU, trained on all of MNIST: a model trained here on a few thousand images
    read the redrawn digits 2 to 3 points worse on one machine than on another, whatever the recipe."""
    [record] = [r for r in checkpoints.find_models("mnist", include_runs=False) if r.arch == "lenet5-relu"]
    return checkpoints.load_record(record)


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


def test_clothes_are_framed_as_fashion_mnist_was_not_as_mnist():
    """Fashion-MNIST's products fill the field (longer side 28, centred by their box): in MNIST's 20-pixel box a
    drawn shirt is a third smaller than the shirts a model learnt from."""
    pictures = data.load("fashion", train=False).subset(slice(0, 300))
    [record] = [r for r in checkpoints.find_models("fashion", include_runs=False) if r.arch == "lenet5-relu"]
    model = checkpoints.load_record(record)
    original = evaluate(model, pictures, "fashion").accuracy
    redrawn = [redraw(image, size=200, top=40, left=40) for image in pictures.images]

    def prepared(dataset: str) -> torch.Tensor:
        return torch.cat([preprocess.prepare(p, dataset=dataset).tensor("fashion") for p in redrawn])

    assert accuracy(model, prepared("fashion"), pictures.labels) >= original - 2
    assert accuracy(model, prepared("mnist"), pictures.labels) < original - 15
    stages = preprocess.prepare(redrawn[0], dataset="fashion")
    assert max(stages.scaled.shape) == 28 and not stages.framing.by_mass


def test_the_stages_are_named_by_what_was_done():
    picture = np.zeros((CANVAS, CANVAS), np.uint8)
    picture[40:240, 130:150] = 255  # a 1
    assert [name for name, _ in preprocess.prepare(picture).steps()] == ["picture", "cropped", "scaled", "centred"]
    naive = preprocess.prepare(picture, naive=True)
    assert [name for name, _ in naive.steps()] == ["picture", "squashed"]  # nothing cropped, scaled or centred
    assert naive.steps()[1][1].shape == (28, 28)


@pytest.mark.parametrize("shape", [(5, 1), (1, 5), (28, 28), (280, 280), (3, 700)])
def test_a_stage_picture_is_square_with_the_stage_s_shape_inside(shape):
    rng = np.random.default_rng(0)
    image = rng.random(shape, dtype=np.float32)
    picture = preprocess.stage_picture(image)
    assert picture.shape == (preprocess.STAGE_SIZE, preprocess.STAGE_SIZE, 4) and picture.dtype == np.uint8
    rows, cols = np.nonzero(picture[..., 3])  # the opaque part: the stage itself
    scale = preprocess.STAGE_SIZE / max(shape)  # the longer side fills the square, the other keeps the proportion
    assert (np.ptp(rows) + 1, np.ptp(cols) + 1) == (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))
    if shape == (28, 28):  # enlarged 4 times, each pixel a 4x4 block
        np.testing.assert_array_equal(picture[::4, ::4, 0], np.round(image * 255).astype(np.uint8))


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


def crafted_png(width: int, height: int) -> bytes:
    """A PNG of a few kB that declares width x height 1-bit pixels, all black: made row by row, never held whole."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = bytes(1 + (width + 7) // 8)  # filter byte, then the packed bits
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def data_url(payload: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(payload).decode()


def seven_on_paper(mnist_test) -> np.ndarray:
    """The first MNIST test digit (a 7), dark ink on white paper at canvas size, as a scan or photo would be."""
    assert mnist_test.labels[0] == 7
    return 255 - np.kron(mnist_test.images[0].numpy(), np.ones((10, 10), dtype=np.uint8))


def test_a_16_bit_png_reads_as_the_same_picture_in_8_bits(mnist_test):
    seven = seven_on_paper(mnist_test)
    sixteen = png(seven.astype(np.uint16) * 257)  # 0..255 -> 0..65535, as a 16-bit scanner stores it
    assert Image.open(io.BytesIO(sixteen)).mode.startswith("I")
    picture = preprocess.read_image(sixteen)
    np.testing.assert_array_equal(picture, preprocess.read_image(png(seven)))
    stages = preprocess.prepare(picture)
    assert not stages.empty and stages.inverted


def test_a_photo_with_exif_orientation_is_read_upright(mnist_test):
    upright = np.dstack([seven_on_paper(mnist_test)] * 3)
    # A phone held sideways stores the sensor's pixels turned a quarter left and tags them "rotate 90 CW" (6).
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(upright))).save(buffer, format="JPEG", quality=95, exif=exif)
    photo = preprocess.read_image(buffer.getvalue(), name="phone.jpg")
    buffer = io.BytesIO()
    Image.fromarray(upright).save(buffer, format="JPEG", quality=95)
    expected = preprocess.read_image(buffer.getvalue())
    assert np.abs(photo.astype(int) - expected.astype(int)).mean() < 2  # JPEG noise only
    assert np.abs(np.rot90(photo).astype(int) - expected.astype(int)).mean() > 20  # sideways is far off


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, under its error
@pytest.mark.parametrize("side", [13000, 20000], ids=["over-the-limit", "pillow-bomb"])
def test_a_decompression_bomb_says_too_many_pixels(side):
    bomb = crafted_png(side, side)
    assert len(bomb) < 100_000  # small on the wire
    with pytest.raises(preprocess.ImageError, match=rf"bomb.png has too many pixels.*at most {16_777_216:,}"):
        preprocess.read_image(bomb, name="bomb.png")


def canvas_png(ink: np.ndarray) -> np.ndarray:
    """What the Draw page's canvas sends: white ink on opaque black, RGBA."""
    return np.dstack([ink] * 3 + [np.full_like(ink, 255)])


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_the_canvas_data_url_is_decoded_within_the_canvas_size(mnist_test):
    ink = np.kron(mnist_test.images[0].numpy(), np.ones((10, 10), dtype=np.uint8))
    np.testing.assert_array_equal(preprocess.read_canvas(data_url(png(canvas_png(ink))), width=CANVAS, height=CANVAS),
                                  canvas_png(ink))
    refusals = [
        (data_url(crafted_png(13000, 13000)), r"the drawing has too many pixels \(13000x13000\); at most 78,400"),
        (data_url(png(np.zeros((CANVAS, CANVAS + 1), np.uint8))), "too many pixels"),
        (data_url(bytes(2**20)), "the drawing is 1,024 kB; a 280x280 canvas is at most 370 kB"),
        ("data:image/png;base64,not base64!", "the drawing is not a picture that can be read"),
        (data_url(png(ink, "JPEG")), "the drawing is a JPEG file; upload a PNG picture"),
        ("data:image/jpeg;base64," + data_url(png(ink, "JPEG")).split(",")[1], "not a PNG data URL"),
        ({"data": "a dict"}, "the drawing is not a PNG data URL but a dict"),
    ]
    for url, message in refusals:
        with pytest.raises(preprocess.ImageError, match=message):
            preprocess.read_canvas(url, width=CANVAS, height=CANVAS)


def test_a_grey_and_alpha_canvas_reads_like_rgba(digits):
    rgba = redraw(digits.images[0], size=140, top=130, left=130, transparent=True)  # white pen, transparent paper
    grey_alpha = rgba[..., [0, 3]]  # the same drawing as LA: H x W x 2
    expected = preprocess.prepare(rgba).centred
    np.testing.assert_array_equal(preprocess.prepare(grey_alpha).centred, expected)
    buffer = io.BytesIO()
    Image.fromarray(grey_alpha).save(buffer, format="PNG")  # mode LA
    picture = preprocess.read_canvas(data_url(buffer.getvalue()), width=CANVAS, height=CANVAS)
    np.testing.assert_array_equal(preprocess.prepare(picture, invert=False).centred, expected)


def test_picture_files_are_checked_before_they_are_read(tmp_path, mnist_test):
    good = tmp_path / "seven.png"
    good.write_bytes(png(seven_on_paper(mnist_test)))
    assert preprocess.read_image_file(good).shape == (CANVAS, CANVAS, 4)
    with open(tmp_path / "huge.png", "wb") as file:  # sparse: 6 MB on paper, nothing on disk
        file.truncate(6 * 2**20)
    with pytest.raises(preprocess.ImageError, match="huge.png is 6.0 MB; pictures up to 5 MB are accepted"):
        preprocess.read_image_file(tmp_path / "huge.png")
    with pytest.raises(preprocess.ImageError, match="is a folder, not a picture file"):
        preprocess.read_image_file(tmp_path)
    with pytest.raises(preprocess.ImageError, match="missing.png: No such file"):
        preprocess.read_image_file(tmp_path / "missing.png")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs or /dev/zero on this OS")
def test_devices_and_pipes_are_refused_without_reading_them(tmp_path):
    os.mkfifo(tmp_path / "pipe")  # opening it would wait for a writer forever
    for path in ("/dev/zero", tmp_path / "pipe"):
        with pytest.raises(preprocess.ImageError, match="is a device, pipe or socket, not a picture file"):
            preprocess.read_image_file(path)


def stroke(length: int, *, pen: int) -> np.ndarray:
    """A horizontal stroke `length` pixels long drawn with a round-ish pen `pen` pixels wide, on the black canvas."""
    ink = np.zeros((CANVAS, CANVAS), np.uint8)
    ink[140 : 140 + pen, 140 : 140 + length + pen] = 255
    return canvas_png(ink)


@pytest.mark.parametrize(
    "picture, problem",
    [(canvas_png(np.zeros((CANVAS, CANVAS), np.uint8)), preprocess.BLANK),
     (canvas_png(np.full((CANVAS, CANVAS), 255, np.uint8)), preprocess.COVERED),
     (stroke(0, pen=1), preprocess.TOO_LITTLE),  # a single dot
     (stroke(3, pen=6), preprocess.TOO_LITTLE)],  # the Draw page's thinnest pen
    ids=["nothing-drawn", "full-of-ink", "a-dot", "a-3-pixel-stroke"],
)
def test_the_canvas_says_why_it_holds_no_digit(picture, problem):
    stages = preprocess.prepare(picture, invert=False)  # as the Draw page reads its canvas
    assert stages.empty and stages.problem == problem
    with pytest.raises(ValueError, match=re.escape(f"no digit to classify: {problem}")):
        stages.tensor("mnist")


def test_a_bold_digit_is_not_covered(digits):
    # The thickest pen (40 px) on a digit that fills the canvas still leaves most of it paper.
    picture = redraw(digits.images[0], size=270, top=5, left=5, thickness=10)
    stages = preprocess.prepare(picture, invert=False)
    assert stages.problem is None and not stages.empty
