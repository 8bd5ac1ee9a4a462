"""scripts/loadtest.py at a classroom of three: it runs end to end and its report is complete and sane.
The figures themselves belong to the benchmark, so no timing is asserted here beyond its timeouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from scripts import loadtest

REPO = Path(__file__).resolve().parent.parent


def _require_browser() -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing = "the playwright package"
    else:
        missing = None if os.path.exists(loadtest.CHROMIUM) else f"Chromium at {loadtest.CHROMIUM}"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is missing; .ci/run installs it")
        pytest.skip(f"{missing} is missing (apt-get install chromium; pip install playwright)")


def test_percentile_is_the_nearest_rank():
    assert loadtest.percentile([], 50) is None
    assert loadtest.percentile([3.0], 95) == 3.0
    assert loadtest.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert loadtest.percentile([float(i) for i in range(1, 21)], 95) == 19.0


def test_three_students_draw_while_a_run_trains(tmp_path):
    _require_browser()
    out = tmp_path / "load.json"
    done = subprocess.run(
        [sys.executable, "scripts/loadtest.py", "--students", "3", "--watchers", "2", "--train", "--returning",
         "--solo-seconds", "4", "--watch-seconds", "4", "--ramp", "2", "--timeout", "120", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert set(report) == {f.name for f in fields(loadtest.Report)}
    assert (report["students"], report["watchers"], report["train"], report["returning"]) == (3, 2, True, True)
    assert report["answered"] == 3 and report["errors"] == 0 and report["error_messages"] == []
    assert report["server_cpu_per_student_s"] >= report["server_cpu_per_student_net_s"] >= 0
    assert report["warmup_cpu_s"] > 0
    assert report["server_cpu_s"] == pytest.approx(report["server_cpu_open_s"] + report["server_cpu_draw_s"])
    for figure in ("canvas_ready", "answer"):
        assert 0 < report[f"{figure}_p50_s"] <= report[f"{figure}_p95_s"] <= report[f"{figure}_max_s"]
    assert report["ramp_s"] == 2 and report["watch_browser_cpu_per_s"] > 0
    assert report["solo_readings"] > 0 and report["busy_readings"] > 0 and report["watched_readings"] > 0
    assert report["watched_img_s"] > 0 and report["watched_solo_ratio"] > 0
    assert report["solo_img_s"] > 0 and report["busy_img_s"] > 0 and report["busy_solo_ratio"] > 0
    assert "cores" in report["machine"] and report["wall_s"] > report["phase_s"] > 0
