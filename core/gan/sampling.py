"""Digits from a trained generator: samples, class sweeps, latent walks, pictures and synthetic datasets."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from core import checkpoints, data, explain
from core.models import evaluating
from core.models.cgan import LATENT, Generator

# Digits per forward pass: G's activations grow with the batch (an export of 60,000 at once peaked at 13.9 GB).
CHUNK = 512


def to_pixels(images: Tensor) -> Tensor:
    """G's output in [-1, 1] -> uint8 N x 28 x 28."""
    return images.squeeze(1).add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


@torch.inference_mode()
def sample_with(generator: Generator, z: Tensor, labels: Tensor) -> Tensor:
    """G's images (in [-1, 1]) for given noise and labels, in eval mode, without touching its mode."""
    with evaluating(generator):
        return generator(z, labels)


def generate(generator: Generator, z: Tensor, labels: Tensor | Sequence[int]) -> Tensor:
    """uint8 digits (N x 28 x 28) for given noise (N x latent) and labels (N,), ``CHUNK`` at a time."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) and (labels.min() < 0 or labels.max() >= generator.num_classes):
        raise ValueError(f"classes must be 0 to {generator.num_classes - 1}, got {labels.tolist()}")
    device = next(generator.parameters()).device
    # in eval mode each digit depends on its own z and label alone: chunks give one pass's pixels
    # (bit for bit on the CPU, tests/test_gan.py) and memory stays flat for any N
    return torch.cat([to_pixels(sample_with(generator, z_part.to(device), part.to(device))).cpu()
                      for z_part, part in zip(z.split(CHUNK), labels.split(CHUNK), strict=True)])


def noise(seeds: Sequence[int], latent: int = LATENT) -> Tensor:
    """One z per seed (len(seeds) x latent): the same seed is the same z, whatever the class."""
    return torch.stack([torch.randn(latent, generator=torch.Generator().manual_seed(s)) for s in seeds])


def sample(generator: Generator, labels: Tensor | Sequence[int], *, seed: int = 0) -> Tensor:
    """uint8 digits (N x 28 x 28), one per label, reproducible for a seed."""
    z = torch.randn(len(labels), generator.latent, generator=torch.Generator().manual_seed(seed))
    return generate(generator, z, labels)


def class_sweep(generator: Generator, seeds: Sequence[int]) -> Tensor:
    """Each seed's z drawn as every class (rows: seeds, columns: classes): z carries the style, y the class."""
    classes = generator.num_classes
    z = noise(seeds, generator.latent).repeat_interleave(classes, 0)
    return generate(generator, z, torch.arange(classes).repeat(len(seeds)))


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation: a straight line between two Gaussian z's passes through unlikely short
    vectors near the middle, the arc keeps their length typical (White, 2016)."""
    omega = torch.arccos(torch.clamp(F.cosine_similarity(a, b, dim=0), -1.0, 1.0))
    t = t[:, None]
    if omega.abs() < 1e-4:  # (nearly) the same direction: the arc is a line
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def interpolation(generator: Generator, label: int, seed_a: int, seed_b: int, *, steps: int = 10) -> Tensor:
    """One class, ``steps`` digits along the arc from seed_a's z to seed_b's."""
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    a, b = noise([seed_a, seed_b], generator.latent)
    return generate(generator, slerp(a, b, torch.linspace(0, 1, steps)), [label] * steps)


def make_grid(images: np.ndarray, *, columns: int, gap: int = 2) -> np.ndarray:
    """N x H x W uint8 -> one picture, ``columns`` per row, with a dark gap between cells."""
    grid, _ = explain.mosaic(torch.as_tensor(images).float(), columns=columns, gap=gap)
    return np.nan_to_num(grid).astype(np.uint8)


def png_bytes(pixels: np.ndarray, *, scale: int = 1) -> bytes:
    """A uint8 grey picture as PNG, each pixel ``scale`` x ``scale`` (nearest neighbour keeps digits crisp)."""
    picture = Image.fromarray(np.ascontiguousarray(pixels))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


EXPORT_FORMATS = ("csv", "npz", "pt")


def synthetic_dataset(generator: Generator, n: int, *, seed: int = 0, label: int | None = None) -> data.Split:
    """``n`` generated digits of one class, or (``label`` None) of the classes in turn (0, 1, ..., 9,
    0, ...), so that every class has its share."""
    if n < 1:
        raise ValueError(f"the dataset needs at least one digit, got {n}")
    labels = torch.arange(n) % generator.num_classes if label is None else torch.full((n,), label)
    return data.Split(sample(generator, labels, seed=seed), labels)


def export_dataset(
    generator: Generator, n: int, path: Path | str, *, fmt: str, seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write ``n`` generated digits to ``path``, the digits ``synthetic_dataset(generator, n, seed=seed)``
    gives, made ``CHUNK`` at a time: ``csv`` as the original repository's fake_mnist.csv (no header, one
    row per digit: the label, then 784 pixel values), ``npz`` (images, labels) or ``pt`` (a torch dict).

    Memory stays flat: CSV rows are written chunk by chunk, NPZ and PT keep only the uint8 pixels (47 MB
    for 60,000). The file appears whole or not at all, also when ``on_progress(done, total)``, called
    after each chunk, raises to stop.
    """
    _check_format(fmt)
    if n < 1:
        raise ValueError(f"the dataset needs at least one digit, got {n}")
    labels = torch.arange(n) % generator.num_classes  # the classes in turn, as synthetic_dataset
    images = None if fmt == "csv" else torch.empty((n, 28, 28), dtype=torch.uint8)
    # One seeded stream drawn chunk by chunk gives sample()'s z: torch fills normals in blocks of 16 and
    # CHUNK x latent is a multiple of 16 (a last chunk under 16 values, for a latent under 16, differs).
    stream = torch.Generator().manual_seed(seed)
    with checkpoints.atomic_file(Path(path)) as file:
        for start in range(0, n, CHUNK):
            part = labels[start:start + CHUNK]
            pixels = generate(generator, torch.randn(len(part), generator.latent, generator=stream), part)
            if images is None:
                _write_rows(file, pixels, part)
            else:
                images[start:start + len(part)] = pixels
            if on_progress:
                on_progress(start + len(part), n)
        if images is not None:
            _write_arrays(file, images, labels, fmt)


def _check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"the format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")


def _write_rows(file: BinaryIO, images: Tensor, labels: Tensor) -> None:
    # savetxt writes row by row, so rows written chunk by chunk make the same bytes as all at once
    np.savetxt(file, np.column_stack([labels.numpy(), images.flatten(1).numpy()]), fmt="%d", delimiter=",")


def _write_arrays(file: BinaryIO, images: Tensor, labels: Tensor, fmt: str) -> None:
    if fmt == "npz":
        np.savez_compressed(file, images=images.numpy(), labels=labels.numpy())
    else:
        torch.save({"images": images, "labels": labels}, file)
