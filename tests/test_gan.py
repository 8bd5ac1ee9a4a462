"""The conditional GAN: shapes, labels that hold after a short training, scores, export, CLI."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core import checkpoints, data, gan, training
from core.gan import scores as gan_scores
from core.models import get_model
from core.training import Callback

REPO = Path(__file__).resolve().parent.parent


def shipped_lenet():
    [record] = [r for r in checkpoints.find_models("mnist", include_runs=False) if r.arch == "lenet5"]
    return checkpoints.load_record(record)


def test_generator_and_discriminator_shapes():
    labels = torch.tensor([0, 3, 9, 9, 5])
    generator, discriminator = gan.Generator(), gan.Discriminator()
    images = generator(torch.randn(5, gan.LATENT), labels)
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1  # tanh, the range real images are scaled to
    assert discriminator(images, labels).shape == (5,)
    # the label reaches both players: another label, another output
    z = torch.randn(1, gan.LATENT)
    generator.eval()
    assert not torch.allclose(generator(z, torch.tensor([1])), generator(z, torch.tensor([7])))
    assert discriminator(images[:1], torch.tensor([1])) != discriminator(images[:1], torch.tensor([7]))


def test_pixels_round_trip_through_the_unit_range(mnist_test):
    pixels = mnist_test.images[:8]
    assert torch.equal(gan.to_pixels(gan.to_unit_range(pixels)), pixels)


class Recorder(Callback):
    """Every step and epoch event of a run."""

    def __init__(self):
        self.steps, self.epochs = [], []

    def on_step(self, trainer, event):
        self.steps.append(event)

    def on_epoch_end(self, trainer, event):
        self.epochs.append(event)


@pytest.fixture(scope="module")
def short_run():
    config = gan.GanConfig(epochs=4, limit=4000, batch_size=64, log_every=25)
    recorder = Recorder()
    result = gan.train_gan(config, callbacks=[recorder])
    return result, recorder.epochs, recorder.steps


def test_a_short_training_already_honours_the_label(short_run, mnist_test):
    result, epochs, _ = short_run
    assert [e.epoch for e in epochs] == [1, 2, 3, 4] and not result.stopped
    assert epochs[-1].grid.shape == (10 * 30 - 2, 10 * 30 - 2)  # 10x10 fixed-noise grid, 2-pixel gaps
    judge = shipped_lenet()
    labels = torch.arange(10).repeat_interleave(100)
    agreement, per_class = gan.label_agreement(judge, gan.sample(result.generator, labels), labels, "mnist")
    assert agreement > 30  # chance is 10 %
    assert len(per_class) == 10


def test_steps_report_the_losses_every_few_batches_and_at_each_epoch_end(short_run):
    _, epochs, steps = short_run
    per_epoch = steps[0].steps_per_epoch
    assert per_epoch == 63  # 4000 images in batches of 64
    # every 25th batch asked for, every 12th reported: 4 epochs of 63 batches draw a curve of at least 20 points
    assert [s.step for s in steps if s.epoch == 1] == [12, 24, 36, 48, 60, 63]
    assert len(steps) >= training.MIN_CURVE_POINTS
    assert steps[-1].progress == 1 and steps[-1].eta_s == 0
    assert all(s.d_loss > 0 and s.g_loss > 0 and s.samples_per_s > 0 for s in steps)
    # the reports cover every batch once: their weighted mean is the epoch's mean loss
    first = [s for s in steps if s.epoch == 1]
    previous = [0] + [s.step for s in first[:-1]]
    counts = [s.step - p for s, p in zip(first, previous, strict=True)]
    mean = sum(s.d_loss * n for s, n in zip(first, counts, strict=True)) / per_epoch
    assert mean == pytest.approx(epochs[0].d_loss, rel=1e-4)


def test_the_latent_walks_keep_z_and_change_only_what_they_say(short_run):
    generator = short_run[0].generator
    sweep = gan.class_sweep(generator, [5, 6])
    assert sweep.shape == (20, 28, 28)
    assert torch.equal(sweep[13], gan.generate(generator, gan.noise([6]), [3])[0])  # row 2 (seed 6), class 3
    walk = gan.interpolation(generator, 4, 1, 2, steps=7)
    assert walk.shape == (7, 28, 28)
    ends = gan.generate(generator, gan.noise([1, 2]), [4, 4])
    assert torch.equal(walk[0], ends[0]) and torch.equal(walk[-1], ends[1])
    with pytest.raises(ValueError, match="at least 2 steps"):
        gan.interpolation(generator, 4, 1, 2, steps=1)


def test_slerp_runs_along_the_arc():
    a, b = torch.randn(64), torch.randn(64)
    b = b / b.norm() * a.norm()
    path = gan.slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    assert torch.allclose(path.norm(dim=1), a.norm().expand(5), rtol=1e-4)  # a line would shrink in the middle
    assert torch.allclose(gan.slerp(a, a, torch.tensor([0.5]))[0], a)


def test_datasets_and_pictures_encode_as_documented(short_run, tmp_path):
    from PIL import Image

    split = gan.synthetic_dataset(short_run[0].generator, 25, seed=3)
    assert split.labels.tolist() == [i % 10 for i in range(25)]
    for fmt in gan.EXPORT_FORMATS:
        gan.export_dataset(short_run[0].generator, 25, tmp_path / f"fake.{fmt}", fmt=fmt, seed=3)
    rows = np.loadtxt(tmp_path / "fake.csv", delimiter=",", dtype=np.int64)
    assert rows.shape == (25, 785) and np.array_equal(rows[:, 1:], split.images.flatten(1).numpy())
    archive = np.load(tmp_path / "fake.npz")
    assert np.array_equal(archive["images"], split.images.numpy())
    saved = torch.load(tmp_path / "fake.pt")
    assert torch.equal(saved["labels"], split.labels)
    with pytest.raises(ValueError, match="csv, npz, pt"):
        gan.export_dataset(short_run[0].generator, 25, tmp_path / "fake.xlsx", fmt="xlsx")
    grid = gan.make_grid(split.images.numpy(), columns=10)
    picture = np.array(Image.open(io.BytesIO(gan.png_bytes(grid, scale=2))))
    assert picture.shape == (2 * grid.shape[0], 2 * grid.shape[1])
    assert np.array_equal(picture[::2, ::2], grid)


def test_the_classification_score_trains_on_generated_digits_and_reads_real_ones(short_run):
    # 4 epochs on 4,000 digits: labels already hold for about a third of the samples, so a LeNet that
    # learns from them alone reads real digits well above chance (10 %)
    assert gan.classification_accuracy_score(short_run[0].generator, "mnist", images=3000) > 20


def test_samples_are_reproducible_and_checked(short_run):
    generator = short_run[0].generator
    assert torch.equal(gan.sample(generator, [7, 7, 2], seed=3), gan.sample(generator, [7, 7, 2], seed=3))
    assert not torch.equal(gan.sample(generator, [7], seed=3), gan.sample(generator, [7], seed=4))
    with pytest.raises(ValueError, match="classes must be 0 to 9"):
        gan.sample(generator, [10])


def test_the_scores_give_their_reference_values_on_real_digits(mnist_test, mnist_train):
    judge = shipped_lenet()
    agreement, per_class = gan.label_agreement(judge, mnist_test.images, mnist_test.labels, "mnist")
    assert agreement > 98 and min(per_class) > 96  # real digits of their class: near-perfect
    real = gan.diversity(mnist_test.images, mnist_test.labels)
    assert real == gan.diversity(mnist_test.images, mnist_test.labels)  # 100 % of itself
    collapsed = mnist_test.images[mnist_test.labels == 3][:1].repeat(200, 1, 1)
    assert gan.diversity(collapsed, torch.full((200,), 3), classes=10)[3] == 0  # one picture, no diversity
    features = gan.penultimate_features(judge, mnist_test.images[:2000], "mnist")
    assert features.shape == (2000, 84)  # LeNet-5's F6
    assert gan.frechet_distance(features, features) == pytest.approx(0, abs=1e-6)
    other = gan.penultimate_features(judge, mnist_train.images[:2000], "mnist")
    shifted = gan.frechet_distance(features, features + 1.0)
    assert 0 < gan.frechet_distance(features, other) < shifted


def test_the_real_digits_are_judged_once_per_judge_file_and_cached(short_run, tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    [judge] = [r for r in checkpoints.find_models("mnist", include_runs=False) if r.arch == "lenet5"]
    featured = []  # how many images each penultimate-feature pass sees
    features = gan_scores.penultimate_features
    monkeypatch.setattr(gan_scores, "penultimate_features",
                        lambda model, images, dataset: featured.append(len(images)) or features(model, images, dataset))
    generator = short_run[0].generator
    first = gan.score(generator, "mnist", judge=judge, per_class=20)
    assert featured == [10_000, 10_000, 200]  # the real test and training digits, then the generated ones
    [cached] = (tmp_path / "cache" / "gan-reference").glob("mnist-*.safetensors")

    featured.clear()
    assert gan.score(generator, "mnist", judge=judge, per_class=20) == first
    assert featured == [200]  # the real digits' side came from the cache

    cached.write_bytes(b"damaged")  # a damaged cache is measured again, not trusted
    featured.clear()
    assert gan.score(generator, "mnist", judge=judge, per_class=20) == first and featured[:2] == [10_000, 10_000]


def test_generators_round_trip_and_stay_out_of_the_classifiers(short_run, tmp_path, monkeypatch):
    result = short_run[0]
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    scores = gan.Scores(50.0, [50.0] * 10, [99.0] * 10, [1.0] * 10, 1.0, 0.1, None, "lenet5", 99.0)
    record = gan.save_generator(result, folder=tmp_path, score=lambda generator: scores, name="mine")
    loaded = gan.load_generator(record.path)
    assert torch.equal(gan.sample(loaded, [1, 2, 3]), gan.sample(result.generator, [1, 2, 3]))
    found = gan.list_generators("mnist")
    assert found[-1] == record and all(r.shipped for r in found[:-1])  # a shipped one comes first
    assert gan.find_generator("mnist") == found[0]
    assert all(r.arch != gan.ARCH for r in checkpoints.find_models("mnist"))
    torch.manual_seed(0)
    lenet = checkpoints.save_classifier(get_model("lenet5"), name="lenet", arch="lenet5", dataset="mnist",
                                        folder=tmp_path,
                                        summary={"test_accuracy": 1, "epochs": 1, "seconds": 1, "device": "CPU"})
    with pytest.raises(checkpoints.CheckpointError, match="not a CGAN generator"):
        gan.load_generator(lenet.path)


def run_cli(*args: str, runs: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MNIST_LAB_RUNS=str(runs))
    return subprocess.run([sys.executable, "-m", "core", "cgan", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def runs_that_judged_real_digits(tmp_path) -> Path:
    """A runs folder whose cache holds the judge's view of the real MNIST digits, as on a machine that scored a
    generator before: measuring it is most of a score's time (30 of the 40 s of `cgan train` here)."""
    judge = gan.judge_record("mnist")
    gan_scores.real_reference(judge, checkpoints.load_record(judge), "mnist")  # the session's cache: once
    shutil.copytree(checkpoints.cache_dir() / "gan-reference", tmp_path / "cache" / "gan-reference")
    return tmp_path


def test_the_command_line_trains_samples_exports_and_scores(runs_that_judged_real_digits, monkeypatch, capsys):
    from PIL import Image

    from core.__main__ import main

    tmp_path = runs_that_judged_real_digits
    done = run_cli("train", "--epochs", "1", "--limit", "500", "--json", runs=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["epochs"] == 1 and 0 <= summary["scores"]["agreement"] <= 100
    assert len(summary["scores"]["agreement_per_class"]) == 10

    # The other commands in this process: a new one costs 6 s of imports each.
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    grid = str(tmp_path / "grid.png")
    assert main(["cgan", "sample", "--digit", "7", "--n", "16", "--seed", "1", "--out", grid]) == 0
    assert Image.open(tmp_path / "grid.png").size == (4 * 30 - 2, 4 * 30 - 2)
    assert main(["cgan", "sample", "--n", "12", "--out", str(tmp_path / "each")]) == 0
    assert sorted(p.name for p in (tmp_path / "each").iterdir())[:3] == ["0000-0.png", "0001-1.png", "0002-2.png"]
    assert len(list((tmp_path / "each").iterdir())) == 12

    assert main(["cgan", "export", "--n", "60", "--out", str(tmp_path / "fake.csv")]) == 0
    rows = np.loadtxt(tmp_path / "fake.csv", delimiter=",", dtype=np.int64)
    assert rows.shape == (60, 785)  # no header; label, then 784 pixels
    assert rows[:, 0].tolist() == [i % 10 for i in range(60)]
    assert rows[:, 1:].min() >= 0 and rows[:, 1:].max() <= 255
    assert main(["cgan", "export", "--n", "20", "--out", str(tmp_path / "fake.npz")]) == 0
    archive = np.load(tmp_path / "fake.npz")
    assert archive["images"].shape == (20, 28, 28) and archive["labels"].shape == (20,)
    capsys.readouterr()
    assert main(["cgan", "export", "--n", "20", "--out", str(tmp_path / "fake.txt")]) == 2
    assert "must end in .csv, .npz or .pt" in capsys.readouterr().err

    assert main(["cgan", "score", "--per-class", "50", "--cas", "0", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert len(scores["diversity_ratio"]) == 10 and scores["cas"] is None and scores["fid"] > scores["fid_reference"]


def test_sample_makes_its_folders_and_refuses_a_file_as_a_folder(tmp_path, capsys):
    from core.__main__ import main

    assert main(["cgan", "sample", "--n", "4", "--out", str(tmp_path / "new" / "deeper" / "grid.png")]) == 0
    assert (tmp_path / "new" / "deeper" / "grid.png").exists()
    (tmp_path / "taken").write_text("not a folder")
    assert main(["cgan", "sample", "--n", "4", "--out", str(tmp_path / "taken")]) == 2
    assert "name a .png file for one grid, or a folder" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "not a folder"  # nothing lost


def test_no_generator_yet_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from core.__main__ import main

    monkeypatch.setattr(checkpoints, "WEIGHTS_DIR", tmp_path / "weights")  # a checkout without shipped ones
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path / "runs"))
    assert main(["cgan", "sample", "--dataset", "fashion", "--out", str(tmp_path / "x.png")]) == 2
    assert "no fashion generator yet" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_score_ship_records_new_scores_for_the_shipped_generator_alone(short_run, tmp_path, monkeypatch, capsys):
    # The best shipped classifier judges; when a better one ships, the generator's scores are redone.
    from core.__main__ import main

    weights = tmp_path / "weights"
    monkeypatch.setattr(checkpoints, "WEIGHTS_DIR", weights)
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path / "runs"))
    old = gan.Scores(50.0, [50.0] * 10, [99.0] * 10, [1.0] * 10, 1.0, 0.1, 90.0, "lenet5", 99.0)
    shipped = gan.save_generator(short_run[0], folder=weights, score=lambda generator: old, ship=True)
    lenet = checkpoints.save_classifier(get_model("lenet5"), name="lenet5", arch="lenet5", dataset="mnist",
                                        folder=weights,
                                        summary={"test_accuracy": 1, "epochs": 1, "seconds": 1, "device": "CPU"})
    new = gan.Scores(80.0, [80.0] * 10, [99.5] * 10, [0.9] * 10, 0.5, 0.1, 95.0, "resnet18", 99.6)
    scored = []
    monkeypatch.setattr(gan, "score", lambda generator, dataset, **options: scored.append(options) or new)

    assert main(["cgan", "score", "--ship", "--cas", "0"]) == 2
    assert "--ship scores the shipped generator as `cgan train --ship` does" in capsys.readouterr().err
    assert main(["cgan", "score", "--ship", "--dataset", "fashion"]) == 2
    assert "no shipped fashion generator" in capsys.readouterr().err
    assert scored == [] and checkpoints.read_manifest(weights) == [shipped, lenet]  # unchanged

    assert main(["cgan", "score", "--ship"]) == 0
    assert scored[0]["per_class"] == 1000 and scored[0]["cas_images"] == 60_000  # as `cgan train --ship`
    [generator] = [r for r in checkpoints.read_manifest(weights) if r.arch == gan.ARCH]
    assert generator.metrics == new.to_json() and generator.kind == "generator"
    assert (generator.file, generator.history, generator.date) == (shipped.file, shipped.history, shipped.date)
    assert lenet in checkpoints.read_manifest(weights)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        gan.GanConfig(epochs=0).validate()
    with pytest.raises(ValueError, match="unknown dataset"):
        gan.GanConfig(dataset="cifar").validate()
    with pytest.raises(ValueError, match="limit must be at least 10"):
        gan.GanConfig(limit=3).validate()


# --- the shipped generators ------------------------------------------------------------------

SHIPPED = [r for r in checkpoints.read_manifest(checkpoints.WEIGHTS_DIR) if r.arch == gan.ARCH]


def test_a_generator_is_shipped_for_every_dataset():
    assert sorted(r.dataset for r in SHIPPED) == sorted(data.DATASETS)


@pytest.mark.parametrize("record", SHIPPED, ids=lambda r: r.dataset)
def test_the_manifest_agreement_is_that_of_the_file(record):
    generator = gan.load_generator(record.path)
    labels = torch.arange(10).repeat_interleave(1000)  # as `cgan train --ship` scores it
    judge = checkpoints.load_record(gan.judge_record(record.dataset, record.metrics["judge"]))
    agreement, per_class = gan.label_agreement(judge, gan.sample(generator, labels), labels, record.dataset)
    assert agreement == pytest.approx(record.metrics["agreement"], abs=0.01)
    assert per_class == pytest.approx(record.metrics["agreement_per_class"], abs=0.01)


def test_the_shipped_mnist_generator_holds_its_labels_without_collapse():
    [record] = [r for r in SHIPPED if r.dataset == "mnist"]
    scores = record.metrics
    assert scores["agreement"] >= 99 and min(scores["agreement_per_class"]) >= 97
    assert min(scores["diversity_ratio"]) >= 0.8  # no class collapsed onto a few pictures
    assert scores["cas"] >= 97  # a LeNet trained on its digits alone reads real ones


# --- a generator file's metadata is checked before anything is built (issue 13, item 6) -----

GOOD_METADATA = {"arch": gan.ARCH, "dataset": "mnist", "latent": "64", "width": "64", "num_classes": "10"}


@pytest.mark.parametrize(("key", "value"), [
    # what each did before it was checked:
    ("latent", "1000000000"),  # tried to allocate 25 TB
    ("latent", "0"), ("latent", "-3"), ("latent", "64.5"), ("latent", "nan"), ("latent", "1025"),
    ("width", "inf"),  # a ValueError from int(), which the Generate page does not expect
    ("width", "4000"),  # built 2 GB of weights before comparing the tensors
    ("width", "0"), ("width", "-1"),  # -1: a negative dimension
    ("width", "wide"),
    ("num_classes", "-1"), ("num_classes", "0"), ("num_classes", "1e6"),
    ("num_classes", "1000000"),  # 25 GB, written: the out-of-memory killer took the process
    ("num_classes", "5"),  # builds, but every page asks an MNIST generator for ten classes
])
def test_hostile_generator_metadata_is_refused_naming_the_file_and_key(tmp_path, key, value):
    torch.manual_seed(0)
    made = gan.Generator()
    path = tmp_path / "generator.safetensors"
    checkpoints.write_weights(made, path, {**GOOD_METADATA, key: value})
    with pytest.raises(checkpoints.CheckpointError, match=re.escape(f"{path}: metadata {key}=")):
        gan.load_generator(path)
    # left out, the key takes the default of every generator made here
    checkpoints.write_weights(made, path, {k: v for k, v in GOOD_METADATA.items() if k != key})
    assert torch.equal(gan.sample(gan.load_generator(path), [3, 4]), gan.sample(made, [3, 4]))


# --- a synthetic dataset written chunk by chunk (issue 13, item 11) ---------------------------

@pytest.fixture(scope="module")
def shipped_generator():
    return gan.load_generator(checkpoints.WEIGHTS_DIR / "mnist" / "cgan-generator.safetensors")


def one_pass(generator: gan.Generator, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as the export made them before it was chunked: one draw of z, one pass of G."""
    labels = torch.arange(n) % generator.num_classes
    z = torch.randn(n, generator.latent, generator=torch.Generator().manual_seed(seed))
    return gan.to_pixels(gan.sample_with(generator, z, labels)), labels


EXPORTED = 1124  # with chunks of 512 digits (gan.CHUNK): two whole chunks and a short one


def test_the_export_writes_the_same_csv_as_one_pass_and_reports_progress(shipped_generator, tmp_path):
    images, labels = one_pass(shipped_generator, EXPORTED, seed=7)
    expected = io.BytesIO()
    np.savetxt(expected, np.column_stack([labels.numpy(), images.flatten(1).numpy()]), fmt="%d", delimiter=",")
    calls = []
    out = tmp_path / "deeper" / "fake.csv"
    gan.export_dataset(shipped_generator, EXPORTED, out, fmt="csv", seed=7,
                       on_progress=lambda done, total: calls.append((done, total)))
    assert out.read_bytes() == expected.getvalue()  # byte for byte: same seed, same digits
    assert calls == [(min(done, EXPORTED), EXPORTED) for done in range(gan.CHUNK, EXPORTED + gan.CHUNK, gan.CHUNK)]
    assert len(calls) >= 3  # one call per chunk
    assert [p.name for p in out.parent.iterdir()] == ["fake.csv"]  # no temporary file left


@pytest.mark.parametrize("fmt", ["npz", "pt"])
def test_the_export_archives_load_back_as_one_pass(shipped_generator, tmp_path, fmt):
    images, labels = one_pass(shipped_generator, EXPORTED, seed=2)
    out = tmp_path / f"fake.{fmt}"
    gan.export_dataset(shipped_generator, EXPORTED, out, fmt=fmt, seed=2)
    if fmt == "npz":
        archive = np.load(out)
        assert sorted(archive.files) == ["images", "labels"]
        loaded_images, loaded_labels = torch.from_numpy(archive["images"]), torch.from_numpy(archive["labels"])
    else:
        saved = torch.load(out)
        assert sorted(saved) == ["images", "labels"]
        loaded_images, loaded_labels = saved["images"], saved["labels"]
    assert loaded_images.dtype == torch.uint8 and loaded_labels.dtype == torch.int64
    assert torch.equal(loaded_images, images) and torch.equal(loaded_labels, labels)


def test_a_gan_resumed_from_its_progress_file_trains_on_as_if_never_stopped(tmp_path):
    config = gan.GanConfig(epochs=3, limit=256, batch_size=64, width=8)
    whole = gan.GanTrainer(config)
    whole.fit()
    progress = tmp_path / "progress.safetensors"

    class StopAfterTheFirstEpoch(Callback):
        def on_epoch_end(self, trainer, record):
            checkpoints.save_progress(trainer, progress)
            trainer.should_stop = True

    gan.GanTrainer(config, callbacks=[StopAfterTheFirstEpoch()]).fit()
    resumed = gan.GanTrainer(config)
    checkpoints.load_progress(resumed, progress)
    assert [e.epoch for e in resumed.history] == [1]
    resumed.fit()
    assert [(e.epoch, e.d_loss, e.g_loss) for e in resumed.history] == [
        (e.epoch, e.d_loss, e.g_loss) for e in whole.history]
    assert all(np.array_equal(a.grid, b.grid) for a, b in zip(resumed.history, whole.history, strict=True))
    for player in ("generator", "discriminator"):  # both players, to the bit
        theirs = getattr(whole, player).state_dict()
        assert all(torch.equal(value, theirs[key]) for key, value in getattr(resumed, player).state_dict().items())

    with pytest.raises(checkpoints.CheckpointError, match="another configuration"):
        checkpoints.load_progress(gan.GanTrainer(gan.GanConfig(epochs=4, limit=256, batch_size=64, width=8)),
                                  progress)


def test_an_export_stopped_midway_leaves_the_old_file_and_no_leftovers(shipped_generator, tmp_path):
    out = tmp_path / "fake.csv"
    out.write_text("an earlier export\n")

    def stop(done: int, total: int) -> None:
        if done > gan.CHUNK:
            raise KeyboardInterrupt  # as Ctrl-C, or Streamlit stopping a rerun's script

    with pytest.raises(KeyboardInterrupt):
        gan.export_dataset(shipped_generator, EXPORTED, out, fmt="csv", on_progress=stop)
    assert [p.name for p in tmp_path.iterdir()] == ["fake.csv"]
    assert out.read_text() == "an earlier export\n"


def test_bad_exports_are_refused_before_anything_is_drawn(shipped_generator, tmp_path):
    with pytest.raises(ValueError, match="csv, npz, pt, got 'xlsx'"):
        gan.export_dataset(shipped_generator, 10, tmp_path / "fake.xlsx", fmt="xlsx")
    with pytest.raises(ValueError, match="at least one digit, got 0"):
        gan.export_dataset(shipped_generator, 0, tmp_path / "fake.csv", fmt="csv")
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(checkpoints.CheckpointError, match="could not make the folder"):
        gan.export_dataset(shipped_generator, 10, tmp_path / "taken" / "fake.csv", fmt="csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
