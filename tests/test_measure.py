"""core/cost, metrics, bench and zoo: counts by hand and by formula, sensible timings, the caches, bench --zoo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from core import bench, checkpoints, cost, metrics, zoo
from core.models import get_model, list_models

REPO = Path(__file__).resolve().parent.parent


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=3),  # 4 x 26 x 26
        nn.ReLU(),
        nn.MaxPool2d(2),  # 4 x 13 x 13
        nn.Flatten(),  # 676
        nn.Linear(4 * 13 * 13, 10),
    )


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU(), nn.Linear(32, 10))


def test_parameter_counts_equal_a_hand_count():
    assert cost.count_params(tiny_cnn()) == (4 * 1 * 3 * 3 + 4) + (676 * 10 + 10)  # 6,810
    assert cost.count_params(tiny_mlp()) == (784 * 32 + 32) + (32 * 10 + 10)  # 25,450


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "kernel", "stride", "padding", "groups"),
    [(1, 6, 5, 1, 2, 1), (8, 16, 3, 2, 1, 1), (8, 8, 3, 1, 1, 8), (4, 12, 1, 1, 0, 2)],
)
def test_macs_of_one_conv_layer_follow_the_formula(in_channels, out_channels, kernel, stride, padding, groups):
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups)
    side = (28 + 2 * padding - kernel) // stride + 1
    expected = out_channels * side * side * (in_channels // groups) * kernel * kernel
    assert cost.count_macs(conv, input_size=(1, in_channels, 28, 28)) == expected
    assert cost.count_macs(conv, input_size=(4, in_channels, 28, 28)) == expected  # per image


def test_macs_of_small_models_are_their_layers_sums():
    assert cost.count_macs(tiny_mlp()) == 784 * 32 + 32 * 10
    assert cost.count_macs(tiny_cnn()) == 4 * 26 * 26 * 9 + 676 * 10


def test_layer_summary_of_a_small_cnn():
    layers = cost.layer_summary(tiny_cnn())
    assert [(l.name, l.kind) for l in layers] == [("0", "Conv2d"), ("1", "ReLU"), ("2", "MaxPool2d"),
                                                   ("3", "Flatten"), ("4", "Linear")]
    assert [l.output_shape for l in layers] == [(4, 26, 26), (4, 26, 26), (4, 13, 13), (676,), (10,)]
    assert [l.params for l in layers] == [40, 0, 0, 0, 6770]
    assert [l.macs for l in layers] == [4 * 26 * 26 * 9, 0, 0, 0, 6760]


def test_layer_summary_depth_groups_blocks_and_marks_training_only_heads():
    model = get_model("googlenet")
    top = cost.layer_summary(model, depth=1)
    assert [l.name for l in top] == [name for name, _ in model.named_children()]
    assert sum(l.params for l in top) == cost.count_params(model)
    assert sum(l.macs for l in top) == cost.count_macs(model)
    heads = {l.name: l for l in top if l.name.startswith("aux")}
    assert heads and all(l.output_shape is None and l.params > 0 for l in heads.values())
    assert next(l for l in top if l.name == "classifier").output_shape == (10,)
    leaves = cost.layer_summary(model)
    assert len(leaves) > len(cost.layer_summary(model, depth=2)) > len(top)
    assert sum(l.params for l in leaves) == cost.count_params(model)
    with pytest.raises(ValueError, match="depth must be at least 1"):
        cost.layer_summary(model, depth=0)


@pytest.mark.parametrize("build", [tiny_cnn, tiny_mlp])
def test_speed_is_positive_and_batches_pay(build):
    speed = bench.measure_speed(build(), batch_size=256, repeats=2)
    assert speed.latency_ms > 0 and speed.images_per_s > 0
    assert (speed.batch_size, speed.repeats) == (256, 2)
    # One image at a time pays Python's and the framework's overhead on every call.
    assert speed.images_per_s > 1000 / speed.latency_ms


def test_per_class_accuracy_mistakes_and_hardest_examples():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    model = metrics.Predictions(torch.tensor([0, 1, 1, 1, 0, 1]), torch.tensor([0.9, 0.6, 0.8, 0.7, 0.5, 0.95]))
    accuracy = metrics.per_class_accuracy(model.predicted, labels, 3)
    assert accuracy.tolist() == [50.0, 100.0, 0.0]
    assert metrics.mistakes(model, labels).tolist() == [5, 1, 4]  # the most confident first
    assert metrics.mistakes(model, labels, true_class=2).tolist() == [5, 4]
    assert metrics.mistakes(model, labels, true_class=2, predicted_class=0).tolist() == [4]
    assert metrics.mistakes(model, labels, predicted_class=2).tolist() == []

    others = [torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([1, 0, 1, 1, 1, 1])]
    hardest = metrics.hardest_examples([model.predicted, *others], labels, count=10)
    assert [(h.index, h.wrong, h.answer) for h in hardest] == [(4, 3, 1), (5, 2, 1), (0, 1, 1), (1, 1, 1)]
    assert [h.label for h in hardest] == [2, 2, 0, 0]
    assert len(metrics.hardest_examples([model.predicted, *others], labels, count=2)) == 2


def test_the_lab_report_names_our_architectures():
    assert len(zoo.LAB_REPORT) == 7
    assert {figure.arch for figure in zoo.LAB_REPORT} <= set(list_models())
    assert all(0 < figure.seconds < 1000 and 90 < figure.accuracy < 100 for figure in zoo.LAB_REPORT)


def cheapest_shipped(count: int) -> list[checkpoints.ModelRecord]:
    records = checkpoints.find_models("mnist", include_runs=False)
    if len(records) < count:
        pytest.skip(f"needs {count} shipped MNIST models, found {len(records)}")
    return sorted(records, key=lambda r: cost.architecture_size(r.arch)[1])[:count]


def test_zoo_table_times_each_architecture_once_and_caches_it(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    records = cheapest_shipped(2)
    records = [*records, checkpoints.ModelRecord(**{**records[0].to_json(), "name": "a twin"},
                                                 folder=records[0].folder)]
    steps = []
    rows = zoo.zoo_table(records, devices=[torch.device("cpu")], repeats=1,
                             progress=lambda done, total, what: steps.append((done, total, what)))
    assert [row.name for row in rows] == [r.name for r in records]
    assert steps[0][:2] == (0, 2) and steps[-1][:2] == (2, 2)  # two architectures, the twin shares one
    for row, record in zip(rows, records, strict=True):
        assert (row.arch, row.test_accuracy, row.epochs) == (record.arch, record.test_accuracy, record.epochs)
        assert (row.params, row.macs) == cost.architecture_size(record.arch)
        assert row.weights_mb >= 4 * row.params / 1e6
        assert row.cpu_latency_ms > 0 and row.cpu_images_per_s > 0 and row.gpu_latency_ms is None
    assert (rows[2].cpu_latency_ms, rows[2].cpu_images_per_s) == (rows[0].cpu_latency_ms, rows[0].cpu_images_per_s)

    cache = json.loads((tmp_path / "cache" / "speed.json").read_text())
    figures = cache["machines"][bench.describe_machine("cpu")]
    assert len(figures) == 2 and all(f["repeats"] == 1 and f["batch_size"] == 256 for f in figures.values())

    timed = []
    monkeypatch.setattr(zoo, "measure_speed", lambda model, **options: timed.append(model) or
                        bench.Speed(1.0, 2.0, options["batch_size"], options["repeats"]))
    again = zoo.zoo_table(records, devices=[torch.device("cpu")], repeats=1)
    assert not timed and [row.cpu_latency_ms for row in again] == [row.cpu_latency_ms for row in rows]
    fresh = zoo.zoo_table(records, devices=[torch.device("cpu")], repeats=1, refresh=True)
    assert len(timed) == 2 and all(row.cpu_latency_ms == 1.0 for row in fresh)


def test_predictions_match_the_manifest_and_are_cached(tmp_path, monkeypatch, mnist_test):
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    [record] = cheapest_shipped(1)
    answers = metrics.model_predictions(record, device="cpu")
    assert answers.predicted.shape == answers.confidence.shape == (len(mnist_test),)
    assert ((answers.confidence > 0) & (answers.confidence <= 1)).all()
    accuracy = 100 * (answers.predicted == mnist_test.labels).float().mean().item()
    assert accuracy == pytest.approx(record.test_accuracy, abs=0.1)  # shipped weights are float16
    assert len(list((tmp_path / "cache" / "predictions").glob("*.safetensors"))) == 1

    def no_loading(record):
        raise AssertionError("the cached answers should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "load_record", no_loading)
        cached = metrics.model_predictions(record)
    assert torch.equal(cached.predicted, answers.predicted) and torch.equal(cached.confidence, answers.confidence)

    broken = tmp_path / "mnist" / "broken.safetensors"
    broken.parent.mkdir()
    broken.write_bytes(b"not weights")
    bad = checkpoints.ModelRecord(**{**record.to_json(), "name": "broken", "file": "mnist/broken.safetensors"},
                                  folder=tmp_path)
    missing = checkpoints.ModelRecord(**{**record.to_json(), "name": "gone", "file": "mnist/gone.safetensors"},
                                      folder=tmp_path)
    answers_of, problems = zoo.zoo_predictions([bad, record, missing])
    assert list(answers_of) == [record.path]
    assert "not a readable safetensors file" in problems["broken"] and "missing" in problems["gone"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)


def test_bench_zoo_prints_every_model_as_json_and_as_text():
    done = run_cli("bench", "--zoo", "--repeats", "1", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    records = checkpoints.find_models()
    assert [row["name"] for row in report["models"]] == [r.name for r in records]
    assert all(row["cpu_latency_ms"] > 0 and row["cpu_images_per_s"] > 0 for row in report["models"])
    assert report["machines"][0] == bench.describe_machine("cpu")
    assert [f["family"] for f in report["lab_report"]["figures"]][:2] == ["LeNet", "AlexNet"]

    done = run_cli("bench", "--zoo", "--dataset", "mnist")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["model", "dataset", "params", "MACs"]
    mnist = checkpoints.find_models("mnist")
    assert [line.split()[0] for line in lines[1:1 + len(mnist)]] == [r.name.split()[0] for r in mnist]
    assert "GoogLeNet" in lines[-1] and "193.44 s" in lines[-1]
    assert "timing the zoo on" in done.stderr
