"""The command line as a user runs it: a fresh process, JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import checkpoints
from core.models import list_models

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, runs: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if runs is not None:
        env["MNIST_LAB_RUNS"] = str(runs)
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_list_json_describes_the_zoo():
    done = run_cli("list", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["name"] for r in rows] == list_models()
    for row in rows:
        assert row["title"] and row["year"] > 1950
        assert 0 < row["params"] <= 5_000_000 and 0 < row["macs"] <= 25_000_000


def test_train_then_eval_agree(tmp_path):
    done = run_cli("train", "--arch", "lenet5", "--limit", "600", "--epochs", "1", "--val-split", "0.1",
                   "--name", "cli test", "--json", runs=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert 0 <= summary["test_accuracy"] <= 100 and summary["train_samples_per_s"] > 0
    assert summary["epochs"] == 1 and summary["config"]["limit"] == 600
    assert Path(summary["saved_to"]) == tmp_path / "mnist" / "cli-test.safetensors"
    assert "epoch 1/1" in done.stderr and "scoring the test set" in done.stderr

    done = run_cli("eval", "--only", "runs", "--json", runs=tmp_path)
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert (row["arch"], row["dataset"], row["name"]) == ("lenet5", "mnist", "cli test")
    assert abs(row["test_accuracy"] - summary["test_accuracy"]) <= 0.05


def test_eval_reports_a_broken_file_and_goes_on(tmp_path):
    for name in ("good", "broken"):
        done = run_cli("train", "--arch", "lenet5", "--limit", "100", "--epochs", "1", "--name", name,
                       runs=tmp_path)
        assert done.returncode == 0, done.stderr
    (tmp_path / "mnist" / "broken.safetensors").write_bytes(b"not weights")
    done = run_cli("eval", "--only", "runs", "--json", runs=tmp_path)
    assert done.returncode == 1
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert "test_accuracy" in rows["good"]
    assert "broken.safetensors: not a readable safetensors file" in rows["broken"]["error"]


def test_human_output_and_bad_input():
    done = run_cli("train", "--arch", "lenet5", "--lr", "-1")
    assert done.returncode == 2
    assert "error: lr must be a positive number, got -1.0" in done.stderr
    done = run_cli("train", "--arch", "lenet6")
    assert done.returncode == 2 and "invalid choice: 'lenet6'" in done.stderr


def test_predict_json_answers_per_image_in_order(tmp_path, mnist_test):
    import numpy as np
    from PIL import Image

    paths = []
    for i in range(3):  # dark ink on white paper, at canvas size
        picture = 255 - np.kron(mnist_test.images[i].numpy(), np.ones((10, 10), dtype=np.uint8))
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(picture).save(paths[-1])
    Image.fromarray(np.full((280, 280), 255, np.uint8)).save(tmp_path / "blank.png")
    done = run_cli("predict", *map(str, paths), str(tmp_path / "blank.png"), "--json")
    assert done.returncode == 1  # the blank picture is an error, reported in its place
    rows = json.loads(done.stdout)
    assert [row["image"] for row in rows] == [str(p) for p in paths] + [str(tmp_path / "blank.png")]
    for row, label in zip(rows, mnist_test.labels[:3].tolist(), strict=False):
        assert row["consensus"]["digit"] == label and 0 < row["consensus"]["probability"] <= 1
        assert row["models"] and {"name", "digit", "probability", "probabilities"} <= set(row["models"][0])
    assert "nothing to classify" in rows[3]["error"]


@pytest.mark.parametrize("command", ["list", "train", "eval", "predict", "bench"])
def test_every_command_has_help(command):
    done = run_cli(command, "--help")
    assert done.returncode == 0 and "--json" in done.stdout


def test_bench_json_reports_both_pipelines():
    done = run_cli("bench", "--batches", "10", "--rounds", "2", "--cgan-images", "1280", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    pipeline = report["pipeline"]
    assert pipeline["tutorial_images_per_s"] > 0 and pipeline["trainer_images_per_s"] > 0
    assert pipeline["speedup"] == pytest.approx(
        pipeline["trainer_images_per_s"] / pipeline["tutorial_images_per_s"], rel=0.01)
    assert "torch" in report["device"]
    draw = report["draw"]
    assert draw["models"] == len(checkpoints.find_models("mnist", include_runs=False))
    if draw["models"]:
        assert draw["median_ms"] > 0 and draw["repeats"] == 50
    [cpu, *gpu] = report["cgan_epoch"]  # one whole epoch of the CGAN, timed on each device
    assert "CPU" in cpu["device"] and cpu["seconds"] > 0 and len(gpu) == torch.cuda.is_available()
    assert cpu["images"] == 1280


def test_train_ship_writes_float16_weights_their_own_accuracy_and_their_answers(tmp_path, monkeypatch, capsys):
    from core import metrics
    from core.__main__ import main

    monkeypatch.setattr(checkpoints, "WEIGHTS_DIR", tmp_path / "weights")  # never the checkout's
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path / "runs"))
    assert main(["train", "--arch", "mlp", "--width", "0.25", "--limit", "500", "--epochs", "1", "--ship",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    [record] = checkpoints.read_manifest(tmp_path / "weights")
    assert record.shipped and record.name == "mlp" and summary["saved_to"] == str(record.path)
    assert summary["test_accuracy"] == record.test_accuracy  # measured on the float16 file, as recorded
    tensors, _ = checkpoints.read_weights(record.path)
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    assert (tmp_path / "weights" / "predictions" / f"{metrics.weights_digest(record.path)}.safetensors").is_file()
