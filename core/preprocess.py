"""A drawn canvas or an uploaded picture -> a 28x28 input prepared the way its dataset's images were.

MNIST's digits were size-normalised to fit a 20x20 box (keeping their aspect ratio, with
anti-aliasing) and then centred by their centre of mass in a 28x28 field. Fashion-MNIST's products
were trimmed to the object, their longer side resized to 28 pixels and the shorter one padded to 28
around the centre (Xiao et al., 2017). Drawings fail in most demos because they skip this; ``prepare``
does it and returns every stage, so a page can show the recipe. ``prepare(..., naive=True)`` squashes
the whole picture to 28x28 instead, for contrast.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import stat
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core import data
from core.i18n import Message

MAX_UPLOAD_BYTES = 5 * 2**20  # as .streamlit/config.toml's maxUploadSize
MAX_UPLOAD_PIXELS = 4096 * 4096
INK_THRESHOLD = 0.2  # fainter pixels are noise (anti-aliased edges, scanner dust, paper texture)
MIN_INK_FRACTION = 0.002  # of the picture's pixels: fewer is a dot, not a digit
MIN_INK_EXTENT = 0.08  # the ink's longer side, as a share of the picture's longer side
MAX_INK_FRACTION = 0.6  # of the picture's pixels: a digit, even a bold one, leaves most of its picture paper
FIELD = 28


@dataclass(frozen=True)
class Framing:
    """Where a dataset's images put their object in the 28x28 field."""

    box: int  # pixels of the object's longer side
    by_mass: bool  # centred by its centre of mass (MNIST), else by its bounding box (Fashion-MNIST)


# The shipped Fashion-MNIST LeNet-5-ReLU read 300 test images drawn again at canvas size 92 % right with its
# own framing and 66 % with MNIST's, whose 20-pixel box leaves clothes a third smaller than it learnt them.
FRAMINGS = {"mnist": Framing(box=20, by_mass=True), "fashion": Framing(box=FIELD, by_mass=False)}


# Why a picture holds nothing to classify, said the same by the Draw page and the command line, for either dataset.
BLANK = Message("picture.blank")  # "the picture is blank (no ink at all)"
TOO_LITTLE = Message("picture.too_little")  # "too little ink to read (a dot or a short stroke); draw it bigger"
COVERED = Message("picture.covered")  # "the picture is covered in ink, with no paper around the drawing: ..."


class ImageError(ValueError):
    """An upload that is not a usable picture; the message says why."""


@dataclass
class Stages:
    """Each step of the recipe as float images in [0, 1], ink bright (MNIST polarity)."""

    raw: np.ndarray  # the picture in grey, H x W
    cropped: np.ndarray | None  # the bounding box of the ink
    scaled: np.ndarray | None  # longer side framing.box pixels
    centred: np.ndarray | None  # 28 x 28, the input (naive: the whole picture squashed to it)
    inverted: bool  # the picture was dark ink on a light background
    problem: str | None = None  # why there is no digit: BLANK, TOO_LITTLE or COVERED
    framing: Framing = FRAMINGS["mnist"]
    naive: bool = False

    def steps(self) -> list[tuple[str, np.ndarray]]:
        """The stages the picture went through, named: "picture", then "cropped", "scaled" and "centred", or
        "squashed" alone for a naive resize (which crops and centres nothing)."""
        if self.naive:
            return [("picture", self.raw), ("squashed", self.centred)]
        return [(name, image) for name, image in [("picture", self.raw), ("cropped", self.cropped),
                                                  ("scaled", self.scaled), ("centred", self.centred)]
                if image is not None]

    @property
    def empty(self) -> bool:
        """Nothing that could be a digit: ``problem`` says why, and nothing is predicted."""
        return self.centred is None

    def tensor(self, dataset: str) -> torch.Tensor:
        """1 x 1 x 28 x 28, normalised with the dataset's statistics, ready for any model."""
        if self.centred is None:
            raise ValueError(f"there is no digit to classify: {self.problem}")
        pixels = torch.from_numpy(np.round(self.centred * 255)).to(torch.uint8)
        return data.normalize(pixels.unsqueeze(0), dataset)


def to_grey(image: np.ndarray, *, invert: bool | None = None) -> tuple[np.ndarray, bool]:
    """Grey float in [0, 1] with bright ink, from L, LA, RGB or RGBA pixels (uint8 or uint16); also whether it
    was inverted.

    Transparent pixels are paper. Strokes on a transparent canvas are composited over a paper of
    the opposite brightness, so that both white and black pens on a transparent canvas work.
    ``invert=None`` guesses the polarity from the border; the canvas, whose paper is known to be dark, passes
    ``invert=False`` so that a canvas covered in ink reads as ink, not as light paper.
    """
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"expected 8- or 16-bit pixels, got an array of {image.dtype}")
    full = np.iinfo(image.dtype).max
    if image.ndim == 2:
        grey, alpha = image.astype(np.float32) / full, None
    elif image.ndim == 3 and image.shape[2] in (1, 2):  # grey, or grey and alpha
        grey = image[..., 0].astype(np.float32) / full
        alpha = image[..., 1].astype(np.float32) / full if image.shape[2] == 2 else None
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        rgb = image[..., :3].astype(np.float32) / full
        grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        alpha = image[..., 3].astype(np.float32) / full if image.shape[2] == 4 else None
    else:
        raise ImageError(f"expected a greyscale, grey and alpha, RGB or RGBA image, got an array of shape "
                         f"{image.shape}")
    if alpha is not None and alpha.min() < 1:
        opaque = alpha > 0.5
        pen_is_dark = opaque.any() and grey[opaque].mean() < 0.5
        paper = 1.0 if pen_is_dark else 0.0
        grey = grey * alpha + paper * (1 - alpha)
    # MNIST is light ink on dark paper; the border of a picture is paper.
    if invert is None:
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        invert = bool(np.median(border) > 0.5)
    return (1 - grey if invert else grey), invert


def _ink_box(grey: np.ndarray) -> tuple[slice, slice] | str:
    """The bounding box of the ink, or why there is no digit (BLANK, TOO_LITTLE or COVERED)."""
    ink = grey > INK_THRESHOLD
    share = ink.mean()
    if share == 0:
        return BLANK
    if share > MAX_INK_FRACTION:
        return COVERED
    if share < MIN_INK_FRACTION:
        return TOO_LITTLE
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    if max(height, width) < MIN_INK_EXTENT * max(grey.shape):
        return TOO_LITTLE
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased resampling (a box-like filter when shrinking, bilinear when enlarging)."""
    x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    out = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out[0, 0].clamp(0, 1).numpy()


def _centre(patch: np.ndarray, *, by_mass: bool) -> np.ndarray:
    """Place a patch in a 28x28 field so that its centre of mass, or its middle, lands on the field's centre."""
    h, w = patch.shape
    if by_mass:
        total = patch.sum()
        middle_y = (patch.sum(axis=1) @ np.arange(h)) / total
        middle_x = (patch.sum(axis=0) @ np.arange(w)) / total
    else:
        middle_y, middle_x = (h - 1) / 2, (w - 1) / 2
    # Top-left corner that moves that point to (13.5, 13.5), kept inside the field.
    top = int(np.clip(np.round((FIELD - 1) / 2 - middle_y), 0, FIELD - h))
    left = int(np.clip(np.round((FIELD - 1) / 2 - middle_x), 0, FIELD - w))
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top : top + h, left : left + w] = patch
    return field


def prepare(image: np.ndarray, *, dataset: str = "mnist", naive: bool = False,
            invert: bool | None = None) -> Stages:
    """Every stage of the dataset's recipe for one picture (L, LA, RGB or RGBA array, as ``to_grey`` reads).

    ``naive=True`` skips cropping, size normalisation and centring: the whole picture is resized
    to 28x28, as most digit demos do. ``invert`` is ``to_grey``'s.
    """
    framing = FRAMINGS[data.get_spec(dataset).name]
    grey, inverted = to_grey(image, invert=invert)
    box = _ink_box(grey)
    if isinstance(box, str):
        return Stages(grey, None, None, None, inverted, problem=box, framing=framing, naive=naive)
    if naive:
        return Stages(grey, None, None, _resize(grey, FIELD, FIELD), inverted, framing=framing, naive=True)
    cropped = grey[box]
    h, w = cropped.shape
    scale = framing.box / max(h, w)
    scaled = _resize(cropped, max(1, round(h * scale)), max(1, round(w * scale)))
    return Stages(grey, cropped, scaled, _centre(scaled, by_mass=framing.by_mass), inverted, framing=framing)


STAGE_SIZE = 112  # pixels a side of a stage's picture


def stage_picture(image: np.ndarray, size: int = STAGE_SIZE) -> np.ndarray:
    """A stage as a size x size RGBA picture: the image scaled to fit, its shape kept, transparent around.

    Enlarged with nearest neighbours, so that a 28x28 input shows its pixels; shrunk with anti-aliasing. A
    5x1 crop stays a thin bar in a square, where a page stretching it to its column's width drew it 470
    pixels tall.
    """
    h, w = image.shape
    scale = size / max(h, w)
    height, width = max(1, round(h * scale)), max(1, round(w * scale))
    if scale >= 1:
        fitted = np.asarray(image)[np.arange(height) * h // height][:, np.arange(width) * w // width]
    else:
        fitted = _resize(np.asarray(image, dtype=np.float32), height, width)
    picture = np.zeros((size, size, 4), np.uint8)
    top, left = (size - height) // 2, (size - width) // 2
    picture[top : top + height, left : left + width, :3] = np.round(np.clip(fitted, 0, 1) * 255)[..., None]
    picture[top : top + height, left : left + width, 3] = 255
    return picture


def _too_big(name: str, size: int) -> ImageError:
    return ImageError(Message("picture.too_large", name=name, size=size / 2**20, most=MAX_UPLOAD_BYTES // 2**20))


def _either(formats: tuple[str, ...]) -> str:
    return Message("picture.either", first=formats[0], second=formats[1]) if len(formats) == 2 else formats[0]


def _decode(payload: bytes, *, name: str, formats: tuple[str, ...], max_pixels: int) -> np.ndarray:
    """PNG or JPEG bytes -> RGBA uint8 array, upright; refused before decoding if over ``max_pixels``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(payload)) as picture:
            if picture.format not in formats:
                raise ImageError(Message("picture.wrong_format", name=name, format=picture.format,
                                         formats=_either(formats)))
            # The header gives the size before any pixel is decoded: a small file can declare gigabytes of them.
            if picture.width * picture.height > max_pixels:
                raise ImageError(Message("picture.too_many_pixels", name=name, width=picture.width,
                                         height=picture.height, most=max_pixels))
            # Phones store a photo as the sensor saw it and say in EXIF how to turn it upright.
            upright = ImageOps.exif_transpose(picture)
            if upright.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey (older Pillow opens it as "I")
                # convert("RGBA") would clip every level above 255 to white: scale 65535 -> 255 instead.
                levels = np.asarray(upright).astype(np.float32) / 257
                upright = Image.fromarray(np.clip(np.round(levels), 0, 255).astype(np.uint8))
            return np.asarray(upright.convert("RGBA"))
    except Image.DecompressionBombError as error:  # raised by Image.open itself, before the check above
        raise ImageError(Message("picture.too_many_pixels_over", name=name, pixels=2 * Image.MAX_IMAGE_PIXELS,
                                 most=max_pixels)) from error
    except (UnidentifiedImageError, OSError) as error:
        raise ImageError(Message("picture.unreadable", name=name, formats=_either(formats))) from error


def read_image(payload: bytes, *, name: str = "the file") -> np.ndarray:
    """Decode an uploaded PNG or JPEG into an RGBA uint8 array, or raise ImageError saying why.

    16-bit pictures are scaled to 8 bits and EXIF orientation is applied, so the array is upright.
    """
    if len(payload) > MAX_UPLOAD_BYTES:
        raise _too_big(name, len(payload))
    return _decode(payload, name=name, formats=("PNG", "JPEG"), max_pixels=MAX_UPLOAD_PIXELS)


def read_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """``read_image`` for a path, refusing what is not a regular file or is over the upload limit before reading.

    ``predict /dev/zero`` once read until MemoryError and a FIFO blocks forever (issue 13): the file's type and
    size are checked first, and at most one byte more than the limit is ever read.
    """
    name = os.fspath(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
            raise ImageError(f"{name} is {kind}, not a picture file; give the path of a PNG or JPEG picture")
        if info.st_size > MAX_UPLOAD_BYTES:
            raise _too_big(name, info.st_size)
        with open(path, "rb") as file:
            payload = file.read(MAX_UPLOAD_BYTES + 1)  # the file may have grown since stat
    except OSError as error:
        raise ImageError(f"{name}: {error.strerror}") from error
    return read_image(payload, name=name)


_PNG_DATA_URL = "data:image/png;base64,"


def read_canvas(url: object, *, width: int, height: int) -> np.ndarray:
    """The drawing canvas's PNG data URL -> RGBA uint8 array, refused (ImageError) if larger than the canvas.

    The canvas component sends its picture as a data URL in the session's state, which a crafted client
    fills with anything: a 660 kB PNG declaring 13000x13000 pixels took 6.8 GB and 9 s of the server to
    decode (issue 13). So the URL's length is checked before the base64 is decoded, and the PNG's size (in its
    header) before its pixels are: nothing larger than a width x height RGBA canvas is ever decoded.
    """
    name = "the drawing"
    if not isinstance(url, str):
        raise ImageError(f"{name} is not a PNG data URL but a {type(url).__name__}")
    if not url.startswith(_PNG_DATA_URL):
        raise ImageError(f"{name} is not a PNG data URL: it starts {url[:30]!r}")
    # Raw RGBA rows plus their filter bytes, plus room for PNG's chunks: no encoder needs more.
    max_bytes = 4 * width * height + height + 2**16
    encoded = url[len(_PNG_DATA_URL):]
    if len(encoded) > 4 * -(-max_bytes // 3):  # base64 holds 3 bytes in 4 characters
        raise ImageError(f"{name} is {len(encoded) * 3 // 4 // 1024:,} kB; a {width}x{height} canvas is at most "
                         f"{max_bytes // 1024:,} kB")
    try:
        payload = base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise ImageError(f"{name} is not a picture that can be read (its base64 is broken: {error})") from error
    return _decode(payload, name=name, formats=("PNG",), max_pixels=width * height)
