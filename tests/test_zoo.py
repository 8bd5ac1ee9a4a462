"""core/zoo.py: the table of every trained model, its speed cache, the lab report, and bench --zoo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from core import bench, checkpoints, cost, zoo
from core.models import list_models
from core.predict import PAGE_THREADS

REPO = Path(__file__).resolve().parent.parent


def test_the_lab_report_names_our_architectures():
    assert len(zoo.LAB_REPORT) == 7
    assert {figure.arch for figure in zoo.LAB_REPORT} <= set(list_models())
    assert all(0 < figure.seconds < 1000 and 90 < figure.accuracy < 100 for figure in zoo.LAB_REPORT)


def test_zoo_table_times_each_architecture_once_and_caches_it(tmp_path, monkeypatch, cheapest_shipped):
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    records = cheapest_shipped[:2]
    records = [*records, checkpoints.ModelRecord(**{**records[0].to_json(), "name": "a twin"},
                                                 folder=records[0].folder)]
    steps, threads = [], torch.get_num_threads()
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
    # measured with the threads a page answers with, whoever asks: the figures the pages show
    assert zoo.timing_machine(torch.device("cpu")).startswith(f"CPU, {PAGE_THREADS} thread")
    figures = cache["machines"][zoo.timing_machine(torch.device("cpu"))]
    assert len(figures) == 2 and all(f["repeats"] == 1 and f["batch_size"] == 256 for f in figures.values())

    timed = []
    monkeypatch.setattr(zoo, "measure_speed", lambda model, **options: timed.append(torch.get_num_threads()) or
                        bench.Speed(1.0, 2.0, options["batch_size"], options["repeats"]))
    again = zoo.zoo_table(records, devices=[torch.device("cpu")], repeats=1)
    assert not timed and [row.cpu_latency_ms for row in again] == [row.cpu_latency_ms for row in rows]
    fresh = zoo.zoo_table(records, devices=[torch.device("cpu")], repeats=1, refresh=True)
    assert timed == [PAGE_THREADS, PAGE_THREADS] and all(row.cpu_latency_ms == 1.0 for row in fresh)
    assert torch.get_num_threads() == threads  # and this thread's own count is left as it was


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
    assert report["machines"][0] == zoo.timing_machine(torch.device("cpu"))
    assert [f["family"] for f in report["lab_report"]["figures"]][:2] == ["LeNet", "AlexNet"]

    done = run_cli("bench", "--zoo", "--dataset", "mnist")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["model", "dataset", "params", "MACs"]
    mnist = checkpoints.find_models("mnist")
    assert [line.split()[0] for line in lines[1:1 + len(mnist)]] == [r.name.split()[0] for r in mnist]
    assert "GoogLeNet" in lines[-1] and "193.44 s" in lines[-1]
    assert "timing the zoo on" in done.stderr
