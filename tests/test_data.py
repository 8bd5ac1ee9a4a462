from __future__ import annotations

import os
import urllib.error

import pytest
import torch

from core import data


@pytest.mark.parametrize("dataset", list(data.DATASETS))
def test_splits_are_whole_uint8_tensors(dataset):
    train = data.load(dataset, train=True)
    test = data.load(dataset, train=False)
    assert train.images.shape == (60_000, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10_000, 28, 28)
    assert train.labels.dtype == torch.long
    assert sorted(train.labels.unique().tolist()) == list(range(10))


def test_limit_keeps_the_first_images(mnist_train):
    first = data.load("mnist", train=True, limit=100)
    assert len(first) == 100
    assert torch.equal(first.images, mnist_train.images[:100])
    with pytest.raises(ValueError, match="limit"):
        data.load("mnist", train=True, limit=0)


@pytest.mark.parametrize("dataset", list(data.DATASETS))
def test_normalisation_uses_each_datasets_statistics(dataset):
    x = data.normalize(data.load(dataset, train=True).images[:20_000], dataset)
    assert x.shape == (20_000, 1, 28, 28) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.02
    assert abs(x.std().item() - 1) < 0.02
    assert x.min().item() == pytest.approx(data.background(dataset))


def test_validation_split_is_seeded_and_disjoint(mnist_train):
    subset = mnist_train.subset(slice(0, 1000))
    train, val = data.split_validation(subset, 0.2, seed=3)
    assert (len(train), len(val)) == (800, 200)
    again, _ = data.split_validation(subset, 0.2, seed=3)
    other, _ = data.split_validation(subset, 0.2, seed=4)
    assert torch.equal(train.labels, again.labels) and torch.equal(train.images, again.images)
    assert not torch.equal(train.images, other.images)
    # disjoint and complete: every image lands in exactly one side
    flat = lambda s: {bytes(img.numpy()) for img in s.images}  # noqa: E731
    assert flat(train).isdisjoint(flat(val))
    assert len(flat(train) | flat(val)) == len(flat(subset))
    _, none = data.split_validation(subset, 0.0)
    assert len(none) == 0
    with pytest.raises(ValueError, match="validation fraction"):
        data.split_validation(subset, 1.0)


def test_batches_cover_the_split_once(mnist_train):
    subset = mnist_train.subset(slice(0, 1000))
    seen = torch.cat([labels for _, labels in data.batches(subset, 64, shuffle=True, generator=torch.Generator())])
    assert len(seen) == 1000
    assert torch.equal(seen.sort().values, subset.labels.sort().values)
    sizes = [len(labels) for _, labels in data.batches(subset, 64, shuffle=False)]
    assert sizes == [64] * 15 + [40]


def test_augmentation_moves_ink_but_keeps_the_background(mnist_train):
    x = data.normalize(mnist_train.images[:256], "mnist")
    fill = data.background("mnist")
    moved = data.augment(x, generator=torch.Generator().manual_seed(0), fill=fill)
    assert moved.shape == x.shape
    assert not torch.allclose(moved, x)
    # the corners of MNIST digits are blank and stay blank after a small warp
    assert torch.allclose(moved[:, :, 0, 0], torch.full((256, 1), fill), atol=1e-5)
    # ink is preserved roughly (bilinear resampling smooths, scaling changes area by <= 21 %)
    ink = lambda t: (t - fill).clamp(min=0).sum(dim=(1, 2, 3))  # noqa: E731
    ratio = ink(moved) / ink(x)
    assert ratio.min() > 0.7 and ratio.max() < 1.35
    same = data.augment(x, max_shift=0, max_degrees=0, scale=(1, 1), fill=fill)
    assert torch.allclose(same, x, atol=1e-4)
    seeded = data.augment(x, generator=torch.Generator().manual_seed(0), fill=fill)
    assert torch.equal(seeded, moved)


def test_mirroring_flips_about_half_the_images_and_nothing_else(mnist_train):
    x = data.normalize(mnist_train.images[:400], "mnist")
    still = dict(max_shift=0, max_degrees=0, scale=(1, 1), fill=data.background("mnist"))
    out = data.augment(x, generator=torch.Generator().manual_seed(1), mirror=True, **still)
    flipped = torch.isclose(out, x.flip(3), atol=1e-4).flatten(1).all(1)
    kept = torch.isclose(out, x, atol=1e-4).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 150 < int(flipped.sum()) < 250
    # the warp's random numbers come first, so the same seed warps the same way with or without mirroring
    plain = data.augment(x, generator=torch.Generator().manual_seed(1), fill=still["fill"])
    both = data.augment(x, generator=torch.Generator().manual_seed(1), mirror=True, fill=still["fill"])
    assert torch.allclose(both[kept], plain[kept], atol=1e-5)
    assert data.get_spec("fashion").mirror and not data.get_spec("mnist").mirror  # a mirrored 7 is no digit


def test_erasing_replaces_one_rectangle_per_chosen_image_and_nothing_else(mnist_train):
    x = data.normalize(mnist_train.images[:400], "mnist")
    out = data.erase(x, 0.5, generator=torch.Generator().manual_seed(2))
    changed = (out != x)[:, 0]  # N x 28 x 28
    touched = changed.flatten(1).any(1)
    assert 150 < int(touched.sum()) < 250
    for mask in changed[touched]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        # one rectangle (noise may equal a pixel by chance, so allow a few), of 2 % to 40 % of the image
        assert box.float().mean() > 0.95
        assert 0.01 * 784 <= box.numel() <= 0.45 * 784
        assert 1 / 3.5 <= len(rows) / len(cols) <= 3.5 or min(len(rows), len(cols)) <= 2
    assert torch.equal(out, data.erase(x, 0.5, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(data.erase(x, 0.0), x)
    assert bool((data.erase(x, 1.0) != x).flatten(1).any(1).all())


def test_missing_files_offline_name_the_folder_and_the_variable(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(self):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    with pytest.raises(data.DatasetNotFound) as error:
        data.load("mnist", train=True, root=tmp_path / "empty")
    message = str(error.value)
    assert str((tmp_path / "empty").resolve()) in message
    assert data.DATA_ENV in message
    assert "MNIST/raw" in message.replace(os.sep, "/")


def test_present_files_are_read_without_writing(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    source = data.data_root() / "MNIST" / "raw"
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).symlink_to((source / name).resolve())
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    split = data.load("mnist", train=False, root=tmp_path)
    assert len(split) == 10_000
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    assert data.data_root() == tmp_path
    assert data.data_root("elsewhere") == data.data_root("elsewhere")
    assert str(data.data_root("elsewhere")) == "elsewhere"
    monkeypatch.delenv(data.DATA_ENV)
    assert str(data.data_root()) == "data"


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="unknown dataset 'kmnist'"):
        data.load("kmnist", train=True)


def raw_with(tmp_path, dataset: str, name: str, content: bytes):
    """A data root whose files are the real ones (linked), but for one file ``name`` that holds ``content``."""
    folder = data.get_spec(dataset).folder
    source, raw = data.data_root() / folder / "raw", tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    for other in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        if other != name:
            (raw / other).symlink_to((source / other).resolve())
    (raw / name).write_bytes(content)
    return raw / name


@pytest.mark.parametrize(
    "name, size, expected",
    [("train-images-idx3-ubyte", 1_000_000, "where its header (60000 x 28 x 28) means 47,040,016"),
     ("train-labels-idx1-ubyte", 30_000, "where its header (60000) means 60,008"),
     ("train-images-idx3-ubyte", 10, "shorter than its own 16-byte header")],
)
def test_a_truncated_file_is_named_with_its_size_and_the_size_it_should_have(tmp_path, name, size, expected):
    with open(data.data_root() / "MNIST" / "raw" / name, "rb") as whole:
        path = raw_with(tmp_path, "mnist", name, whole.read(size))  # a download cut short
    with pytest.raises(data.DatasetNotFound) as error:  # what every page and command already copes with
        data.load("mnist", train=True, root=tmp_path)
    message = str(error.value)
    assert f"MNIST cannot be read: {path} is truncated: {size:,} bytes" in message and expected in message
    assert "Delete it" in message and isinstance(error.value, data.DatasetDamaged)
    assert len(data.load("mnist", train=False, root=tmp_path)) == 10_000  # the other split still loads


def test_a_file_that_is_not_idx_is_named(tmp_path):
    raw_with(tmp_path, "fashion", "t10k-labels-idx1-ubyte", b"<html>404 Not Found</html>")
    with pytest.raises(data.DatasetDamaged, match=r"Fashion-MNIST cannot be read: .*t10k-labels-idx1-ubyte is not an "
                                                  r"idx file \(26 bytes, starting 3c68746d\)"):
        data.load("fashion", train=False, root=tmp_path)
