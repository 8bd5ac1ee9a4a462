"""MNIST and Fashion-MNIST as whole tensors on the training device.

A split is one uint8 tensor (N x 28 x 28) and its labels. Batches are index slices of it;
normalisation and augmentation run batched on the device, so the training loop has no per-sample
Python, no PIL and no DataLoader workers.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

DATA_ENV = "MNIST_LAB_DATA"


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # the key used everywhere: "mnist" or "fashion"
    title: str
    folder: str  # torchvision's class name, also its folder under the data root
    mean: float  # of the training pixels scaled to [0, 1]
    std: float
    classes: tuple[str, ...]
    mirror: bool = False  # may training mirror images? A mirrored shoe is a shoe; a mirrored 7 is no digit


TRAIN_SIZE = 60_000  # images in the training split of either dataset

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist", "MNIST", "MNIST", 0.1307, 0.3081, tuple(str(d) for d in range(10))
    ),
    "fashion": DatasetSpec(
        "fashion", "Fashion-MNIST", "FashionMNIST", 0.2860, 0.3530,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"), mirror=True,
    ),
}


class DatasetNotFound(FileNotFoundError):
    """The files are not under the data root and could not be downloaded."""


class DatasetDamaged(DatasetNotFound):
    """A file is there but not whole (a download or a copy cut short); whoever copes with a missing
    dataset copes with this too."""


def get_spec(dataset: str) -> DatasetSpec:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
    return DATASETS[dataset]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else $MNIST_LAB_DATA, else ./data."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(DATA_ENV) or "data")


@dataclass
class Split:
    """Images as uint8 (N x 28 x 28) and labels (N,), on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))

    def subset(self, index: torch.Tensor | slice) -> Split:
        return Split(self.images[index], self.labels[index])


# The idx format (LeCun's MNIST page): a magic number whose third byte is the element type and fourth the
# number of dimensions, then each dimension as a big-endian 32-bit integer, then the elements.
_IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}
# torchvision unpacks a missing file from the .gz beside it, or downloads both
_REPLACE = ("Delete it to have it unpacked again from its .gz on the next use (or downloaded, where there is no "
            "whole .gz), or put a whole copy there.")


def _raw_files(dataset: str, train: bool, root: Path) -> list[Path]:
    """The two uncompressed files of a split, where torchvision looks for them."""
    prefix = "train" if train else "t10k"
    raw = root / get_spec(dataset).folder / "raw"
    return [raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"]


def _idx_problem(path: Path) -> str | None:
    """What is wrong with an idx file whose size is not what its own header says, else None."""
    size = path.stat().st_size
    with path.open("rb") as file:
        magic = file.read(4)
        if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_ITEM_BYTES:
            return f"{path} is not an idx file ({size:,} bytes, starting {magic.hex() or 'empty'})"
        header = 4 + 4 * magic[3]
        dims = file.read(header - 4)
    if len(dims) < header - 4:
        return f"{path} is truncated: {size:,} bytes, shorter than its own {header}-byte header"
    shape = [int.from_bytes(dims[i : i + 4], "big") for i in range(0, len(dims), 4)]
    expected = header + math.prod(shape) * _IDX_ITEM_BYTES[magic[2]]
    if size == expected:
        return None
    what = "truncated" if size < expected else "longer than its header says"
    return f"{path} is {what}: {size:,} bytes, where its header ({' x '.join(map(str, shape))}) means {expected:,}"


@lru_cache(maxsize=8)
def _read(dataset: str, train: bool, root: Path) -> Split:
    from torchvision import datasets  # heavy import, only when data is actually read

    for path in _raw_files(dataset, train, root):
        problem = _idx_problem(path) if path.is_file() else None  # a missing file is torchvision's to fetch
        if problem:
            raise DatasetDamaged(f"{get_spec(dataset).title} cannot be read: {problem}. {_REPLACE}")
    cls = getattr(datasets, get_spec(dataset).folder)
    try:
        ds = cls(root, train=train, download=False)
    except RuntimeError:
        # torchvision prints download progress; keep stdout clean for --json output.
        try:
            with contextlib.redirect_stdout(sys.stderr):
                ds = cls(root, train=train, download=True)
        except Exception as error:
            raise DatasetNotFound(_missing_message(dataset, root, error)) from error
    return Split(ds.data.contiguous(), ds.targets.long())


def _missing_message(dataset: str, root: Path, error: Exception) -> str:
    folder = get_spec(dataset).folder
    return (
        f"{get_spec(dataset).title} was not found in {root.resolve()} and could not be downloaded "
        f"({type(error).__name__}: {error}). Put the files at {root / folder / 'raw'}/ "
        f"(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        f"t10k-labels-idx1-ubyte, or their .gz), or point the {DATA_ENV} environment variable "
        f"at a folder that holds {folder}/raw/."
    )


def load(
    dataset: str,
    *,
    train: bool,
    root: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    limit: int | None = None,
) -> Split:
    """One split of a dataset on ``device``; ``limit`` keeps the first N images."""
    get_spec(dataset)
    split = _read(dataset, train, data_root(root).resolve())
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        split = split.subset(slice(0, limit))
    return split.to(device)


def split_validation(split: Split, fraction: float, *, seed: int = 0) -> tuple[Split, Split]:
    """A seeded random (train, validation) partition; fraction 0 gives an empty validation set."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    n_val = round(len(split) * fraction)
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    order = order.to(split.labels.device)
    return split.subset(order[n_val:]), split.subset(order[:n_val])


def normalize(images: torch.Tensor, dataset: str) -> torch.Tensor:
    """uint8 (N x 28 x 28) -> float (N x 1 x 28 x 28) with the dataset's own mean and std."""
    spec = get_spec(dataset)
    x = images.unsqueeze(1).float().div_(255)
    return x.sub_(spec.mean).div_(spec.std)


def augment(
    x: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    max_shift: float = 2.0,
    max_degrees: float = 10.0,
    scale: tuple[float, float] = (0.9, 1.1),
    mirror: bool = False,
    whole_pixels: bool = False,
    fill: float = 0.0,
) -> torch.Tensor:
    """Random shifts (pixels), rotations and scales, one affine warp for the whole batch; with
    ``mirror``, half the images (at random) are also flipped left to right.

    With ``whole_pixels`` the shifts are whole pixels, so that, with no rotation or scale, every
    pixel is copied and the picture stays as sharp as the test images (a fractional shift blurs it).
    ``fill`` is the value of uncovered pixels: the normalised background, so that the border
    looks like paper and not like ink.
    """
    n, _, h, w = x.shape
    rand = torch.rand(n, 4, generator=generator).to(x.device)  # a CPU generator keeps runs seeded
    angle = (rand[:, 0] * 2 - 1) * math.radians(max_degrees)
    zoom = scale[0] + rand[:, 1] * (scale[1] - scale[0])
    # affine_grid works in [-1, 1] coordinates: a shift of one pixel is 2 / size.
    if whole_pixels:
        shift = (rand[:, 2:] * (2 * math.floor(max_shift) + 1)).floor() - math.floor(max_shift)
    else:
        shift = (rand[:, 2:] * 2 - 1) * max_shift
    shift_x, shift_y = shift[:, 0] * 2 / w, shift[:, 1] * 2 / h
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    )  # N x 2 x 3, maps output coordinates to input coordinates
    if mirror:  # drawn after the warp, so that runs without mirroring keep their random stream
        flip = torch.rand(n, generator=generator).to(x.device) < 0.5
        theta[:, :, 0] = torch.where(flip[:, None], -theta[:, :, 0], theta[:, :, 0])  # x_out -> -x_out
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill


def erase(
    x: torch.Tensor,
    share: float,
    *,
    generator: torch.Generator | None = None,
    area: tuple[float, float] = (0.02, 0.4),
    max_aspect: float = 3.3,
) -> torch.Tensor:
    """Random erasing (Zhong et al., 2017): in ``share`` of the images, picked at random, one rectangle
    covering ``area`` of the picture, with an aspect ratio up to ``max_aspect`` either way, becomes
    noise, so that a network cannot lean on any one part of a garment or a digit.
    """
    n, _, h, w = x.shape
    rand = torch.rand(n, 5, generator=generator)  # a CPU generator keeps runs seeded
    size = (area[0] + rand[:, 0] * (area[1] - area[0])) * h * w
    aspect = max_aspect ** (rand[:, 1] * 2 - 1)  # log-uniform: as many tall rectangles as wide ones
    height = (size * aspect).sqrt().round().clamp(1, h)
    width = (size / aspect).sqrt().round().clamp(1, w)
    top = (rand[:, 2] * (h - height + 1)).floor()
    left = (rand[:, 3] * (w - width + 1)).floor()
    rows, cols = torch.arange(h), torch.arange(w)
    inside_rows = (rows >= top[:, None]) & (rows < (top + height)[:, None])  # N x H
    inside_cols = (cols >= left[:, None]) & (cols < (left + width)[:, None])  # N x W
    erased = inside_rows[:, :, None] & inside_cols[:, None, :] & (rand[:, 4] < share)[:, None, None]
    noise = torch.randn(x.shape, generator=generator)  # normalised images: noise of the pixels' own spread
    return torch.where(erased[:, None].to(x.device), noise.to(x.device, x.dtype), x)


def background(dataset: str) -> float:
    """The normalised value of a blank (zero) pixel."""
    spec = get_spec(dataset)
    return -spec.mean / spec.std


def batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images, labels) index slices of a split; the last batch may be smaller."""
    n = len(split)
    if shuffle:
        order = torch.randperm(n, generator=generator).to(split.labels.device)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            yield split.images[index], split.labels[index]
    else:
        for start in range(0, n, batch_size):
            yield split.images[start : start + batch_size], split.labels[start : start + batch_size]
