"""A drawn canvas or an uploaded picture -> a 28x28 input prepared the way MNIST was.

MNIST's digits were size-normalised to fit a 20x20 box (keeping their aspect ratio, with
anti-aliasing) and then centred by their centre of mass in a 28x28 field. Drawn digits fail in
most demos because they skip this; ``prepare`` does it and returns every stage, so a page can show
the recipe. ``prepare(..., naive=True)`` squashes the whole picture to 28x28 instead, for contrast.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core import data

MAX_UPLOAD_BYTES = 5 * 2**20  # as .streamlit/config.toml's maxUploadSize
MAX_UPLOAD_PIXELS = 4096 * 4096
INK_THRESHOLD = 0.2  # fainter pixels are noise (anti-aliased edges, scanner dust, paper texture)
MIN_INK_FRACTION = 0.002  # of the picture's pixels: fewer is a dot, not a digit
MIN_INK_EXTENT = 0.08  # the ink's longer side, as a share of the picture's longer side
DIGIT_BOX = 20
FIELD = 28


class ImageError(ValueError):
    """An upload that is not a usable picture; the message says why."""


@dataclass
class Stages:
    """Each step of the recipe as float images in [0, 1], ink bright (MNIST polarity)."""

    raw: np.ndarray  # the picture in grey, H x W
    cropped: np.ndarray | None  # the bounding box of the ink
    scaled: np.ndarray | None  # longer side 20 pixels
    centred: np.ndarray | None  # 28 x 28, centre of mass in the middle
    inverted: bool  # the picture was dark ink on a light background

    @property
    def empty(self) -> bool:
        """Nothing that could be a digit: the page says "draw a digit" and predicts nothing."""
        return self.centred is None

    def tensor(self, dataset: str) -> torch.Tensor:
        """1 x 1 x 28 x 28, normalised with the dataset's statistics, ready for any model."""
        if self.centred is None:
            raise ValueError("there is no digit to classify: the picture is empty")
        pixels = torch.from_numpy(np.round(self.centred * 255)).to(torch.uint8)
        return data.normalize(pixels.unsqueeze(0), dataset)


def to_grey(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """Grey float in [0, 1] with bright ink, from L, RGB or RGBA uint8; also whether it was inverted.

    Transparent pixels are paper. Strokes on a transparent canvas are composited over a paper of
    the opposite brightness, so that both white and black pens on a transparent canvas work.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        grey, alpha = image.astype(np.float32) / 255, None
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        rgb = image[..., :3].astype(np.float32) / 255
        grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        alpha = image[..., 3].astype(np.float32) / 255 if image.shape[2] == 4 else None
    else:
        raise ImageError(f"expected a greyscale, RGB or RGBA image, got an array of shape {image.shape}")
    if alpha is not None and alpha.min() < 1:
        opaque = alpha > 0.5
        pen_is_dark = opaque.any() and grey[opaque].mean() < 0.5
        paper = 1.0 if pen_is_dark else 0.0
        grey = grey * alpha + paper * (1 - alpha)
    # MNIST is light ink on dark paper; the border of a picture is paper.
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    inverted = bool(np.median(border) > 0.5)
    return (1 - grey if inverted else grey), inverted


def _ink_box(grey: np.ndarray) -> tuple[slice, slice] | None:
    ink = grey > INK_THRESHOLD
    if ink.mean() < MIN_INK_FRACTION:
        return None
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    if max(height, width) < MIN_INK_EXTENT * max(grey.shape):
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased resampling (a box-like filter when shrinking, bilinear when enlarging)."""
    x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    out = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out[0, 0].clamp(0, 1).numpy()


def _centre_by_mass(patch: np.ndarray) -> np.ndarray:
    """Place a patch in a 28x28 field so that its centre of mass lands on the field's centre."""
    h, w = patch.shape
    total = patch.sum()
    rows, cols = np.arange(h), np.arange(w)
    com_y = (patch.sum(axis=1) @ rows) / total
    com_x = (patch.sum(axis=0) @ cols) / total
    # Top-left corner that moves the centre of mass to (13.5, 13.5), kept inside the field.
    top = int(np.clip(np.round((FIELD - 1) / 2 - com_y), 0, FIELD - h))
    left = int(np.clip(np.round((FIELD - 1) / 2 - com_x), 0, FIELD - w))
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top : top + h, left : left + w] = patch
    return field


def prepare(image: np.ndarray, *, naive: bool = False) -> Stages:
    """Every stage of MNIST's recipe for one picture (L, RGB or RGBA uint8 array).

    ``naive=True`` skips cropping, size normalisation and centring: the whole picture is resized
    to 28x28, as most digit demos do.
    """
    grey, inverted = to_grey(image)
    box = _ink_box(grey)
    if box is None:
        return Stages(grey, None, None, None, inverted)
    if naive:
        return Stages(grey, None, None, _resize(grey, FIELD, FIELD), inverted)
    cropped = grey[box]
    h, w = cropped.shape
    scale = DIGIT_BOX / max(h, w)
    scaled = _resize(cropped, max(1, round(h * scale)), max(1, round(w * scale)))
    return Stages(grey, cropped, scaled, _centre_by_mass(scaled), inverted)


def read_image(payload: bytes, *, name: str = "the file") -> np.ndarray:
    """Decode an uploaded PNG or JPEG into an RGBA uint8 array, or raise ImageError saying why."""
    from PIL import Image, UnidentifiedImageError

    if len(payload) > MAX_UPLOAD_BYTES:
        raise ImageError(f"{name} is {len(payload) / 2**20:.1f} MB; pictures up to "
                         f"{MAX_UPLOAD_BYTES // 2**20} MB are accepted")
    try:
        with Image.open(io.BytesIO(payload)) as picture:
            if picture.format not in ("PNG", "JPEG"):
                raise ImageError(f"{name} is a {picture.format} file; upload a PNG or JPEG picture")
            if picture.width * picture.height > MAX_UPLOAD_PIXELS:
                raise ImageError(f"{name} is {picture.width}x{picture.height} pixels; "
                                 f"at most {MAX_UPLOAD_PIXELS:,} pixels are accepted")
            return np.asarray(picture.convert("RGBA"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ImageError(f"{name} is not a picture that can be read (PNG or JPEG expected)") from error
