"""Careless and hostile input, item by item of issue 13: nothing is lost, nothing takes the lab down.

Each test names the item it guards. Items about pictures, training, data and the GAN's export have their
tests beside the code they guard (test_preprocess, test_training, test_data, test_gan).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from core import checkpoints, data
from core.jobs import JobManager
from core.models import get_model
from core.predict import Ensemble
from core.training import TrainConfig

REPO = Path(__file__).resolve().parent.parent
SUMMARY = {"test_accuracy": 50.0, "epochs": 1, "seconds": 1.0, "device": "CPU", "config": {}}


def save_lenet(folder: Path, name: str, *, seed: int = 0) -> checkpoints.ModelRecord:
    torch.manual_seed(seed)
    return checkpoints.save_classifier(get_model("lenet5"), name=name, arch="lenet5", dataset="mnist",
                                       summary=SUMMARY, folder=folder)


def run_cli(*args: str, runs: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, checkpoints.RUNS_ENV: str(runs)}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


# --- 1. runs never overwrite each other ---------------------------------------------------------

def test_names_that_look_alike_as_files_are_five_runs_with_their_own_files(tmp_path):
    names = ["a/b", "a\\b", "a b", "a-b", "a.b"]
    records = [save_lenet(tmp_path, name, seed=i) for i, name in enumerate(names)]
    assert [r.name for r in records] == names  # the names as typed
    assert len({r.file for r in records}) == 5
    listed = checkpoints.read_manifest(tmp_path)
    assert sorted(r.name for r in listed) == sorted(names)
    for i, record in enumerate(records):  # each file holds its own run's weights
        torch.manual_seed(i)
        expected = get_model("lenet5").state_dict()["features.0.weight"]
        assert torch.equal(checkpoints.load(record.path).state_dict()["features.0.weight"], expected)


def test_a_name_with_a_control_character_is_refused(tmp_path):
    with pytest.raises(ValueError, match="control characters"):
        save_lenet(tmp_path, "a\x00b")
    assert checkpoints.read_manifest(tmp_path) == []


def test_two_runs_with_the_default_name_are_both_kept(tmp_path):
    first, second = save_lenet(tmp_path, "lenet5"), save_lenet(tmp_path, "lenet5", seed=1)
    assert (first.name, second.name) == ("lenet5", "lenet5-2")
    assert first.path != second.path and first.path.exists() and second.path.exists()


def test_a_run_never_takes_a_file_that_is_on_disk_but_unlisted(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "mine.safetensors").write_bytes(b"someone's file")
    record = save_lenet(tmp_path, "mine")
    assert record.file == "mnist/mine-2.safetensors"
    assert (tmp_path / "mnist" / "mine.safetensors").read_bytes() == b"someone's file"


# --- 2. the manifest keeps every entry when processes save at once ----------------------------

ADDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from core import checkpoints
    folder, tag, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for i in range(count):
        checkpoints.add_record(folder, checkpoints.ModelRecord(
            name=f"{tag}{i}", arch="lenet5", dataset="mnist", file=f"mnist/{tag}{i}.safetensors",
            metrics={"test_accuracy": 1.0}, epochs=1, seconds=1.0, device="CPU", date="d", code_version="v",
            folder=folder))
""")


def add_records(folder: Path, tag: str, count: int) -> None:
    for i in range(count):
        checkpoints.add_record(folder, checkpoints.ModelRecord(
            name=f"{tag}{i}", arch="lenet5", dataset="mnist", file=f"mnist/{tag}{i}.safetensors",
            metrics={"test_accuracy": 1.0}, epochs=1, seconds=1.0, device="CPU", date="d", code_version="v",
            folder=folder))


def test_two_processes_adding_records_at_once_lose_none(tmp_path):
    count = 60
    processes = [subprocess.Popen([sys.executable, "-c", ADDER, str(tmp_path), tag, str(count)], cwd=REPO)
                 for tag in ("p", "q")]
    # and, meanwhile, two threads of this process, as the app server's jobs do
    threads = [threading.Thread(target=add_records, args=(tmp_path, tag, 20)) for tag in ("s", "t")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    assert len(checkpoints.read_manifest(tmp_path)) == 2 * count + 2 * 20


# --- 3. leftovers ------------------------------------------------------------------------------

def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_temporary_files_of_a_killed_save_are_removed_at_the_next_start(tmp_path):
    (tmp_path / "mnist").mkdir()
    stale = tmp_path / "mnist" / f".x.safetensors.{dead_pid()}.1.tmp"
    live = tmp_path / "mnist" / f".y.safetensors.{os.getpid()}.1.tmp"  # a save in progress here
    stale.write_bytes(b"\0" * 1000)
    live.write_bytes(b"\0" * 1000)
    JobManager(folder=tmp_path)
    assert not stale.exists() and live.exists()


def test_weights_no_manifest_lists_are_reported_by_eval_and_removed_by_clean(tmp_path):
    record = save_lenet(tmp_path, "kept")
    orphan = tmp_path / "mnist" / "lost.safetensors"
    orphan.write_bytes(record.path.read_bytes())
    done = run_cli("eval", "--only", "runs", runs=tmp_path)
    assert "weights files that no manifest lists" in done.stderr and str(orphan) in done.stderr
    assert "`python -m core clean` removes them" in done.stderr
    done = run_cli("clean", "--json", runs=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed"] == [str(orphan)]
    assert not orphan.exists() and record.path.exists()


def test_a_full_disk_when_the_manifest_is_written_leaves_no_unlisted_weights(tmp_path, monkeypatch):
    save_lenet(tmp_path, "first")
    before = (tmp_path / "manifest.json").read_text()
    real = checkpoints.write_atomic

    def full_disk_for_manifests(path, payload):
        if path.name == checkpoints.MANIFEST:
            raise checkpoints.CheckpointError(f"could not write {path}: No space left on device")
        real(path, payload)

    monkeypatch.setattr(checkpoints, "write_atomic", full_disk_for_manifests)
    with pytest.raises(checkpoints.CheckpointError, match="No space left"):
        save_lenet(tmp_path, "second")
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == ["first.safetensors"]
    assert (tmp_path / "manifest.json").read_text() == before
    assert checkpoints.orphans(tmp_path) == []


# --- 4. names in every script, checked before training -------------------------------------------

@pytest.mark.parametrize("name", ["数字", "名前", "Zoë's ResNet", "手写 7"])
def test_names_in_any_script_are_welcome(tmp_path, name):
    record = save_lenet(tmp_path, name)
    assert record.name == name and record.path.suffix == ".safetensors"
    assert record.path.name.isascii()
    [listed] = checkpoints.read_manifest(tmp_path)
    assert listed.name == name
    assert name in (tmp_path / "manifest.json").read_text(encoding="utf-8")


def test_the_cli_refuses_a_bad_name_or_folder_before_it_trains(tmp_path):
    done = run_cli("train", "--arch", "vgg19", "--name", "bad\x07name", runs=tmp_path)
    assert done.returncode == 2 and "control characters" in done.stderr
    assert "epoch" not in done.stdout + done.stderr  # refused before any training
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_cli("train", "--arch", "vgg19", runs=blocker / "runs")
    assert done.returncode == 2 and f"cannot save into {blocker / 'runs'}" in done.stderr
    assert "epoch" not in done.stdout + done.stderr
    done = run_cli("cgan", "train", "--name", " ", runs=tmp_path)
    assert done.returncode == 2 and "the run name is empty" in done.stderr


# --- 5. a broken runs manifest hides its own models, nothing else --------------------------------

GOOD_ENTRY = {"name": "good", "arch": "lenet5", "dataset": "mnist", "file": "mnist/good.safetensors",
              "test_accuracy": 50.0, "epochs": 1, "seconds": 1.0, "device": "CPU", "date": "2026-01-01",
              "code_version": "v"}
BROKEN_MANIFESTS = {
    "invalid JSON": ("{not json", "is not a valid manifest"),
    "models not a list": ('{"models": 5}', "is not a valid manifest"),
    "date a number": ({**GOOD_ENTRY, "name": "bad", "date": 5}, "date is 5, not str"),
    "accuracy a string": ({**GOOD_ENTRY, "name": "bad", "test_accuracy": "99"}, "test_accuracy is '99'"),
    "accuracy NaN": ({**GOOD_ENTRY, "name": "bad", "test_accuracy": float("nan")}, "test_accuracy is nan"),
    "unknown key": ({**GOOD_ENTRY, "name": "bad", "colour": "red"}, "unknown keys ['colour']"),
    "missing key": ({k: v for k, v in GOOD_ENTRY.items() if k != "epochs"} | {"name": "bad"}, "lacks ['epochs']"),
    "entry not an object": ("just text", "an entry is a str"),
    "path outside": ({**GOOD_ENTRY, "name": "bad", "file": "../../../etc/passwd"}, "not a .safetensors path"),
    "absolute path": ({**GOOD_ENTRY, "name": "bad", "file": "/etc/x.safetensors"}, "not a .safetensors path"),
}


def write_runs_manifest(folder: Path, case: str) -> None:
    content = BROKEN_MANIFESTS[case][0]
    if isinstance(content, str) and content.startswith("{"):
        text = content
    else:  # a bad entry beside a good one
        text = json.dumps({"models": [GOOD_ENTRY, content]})
    (folder / "manifest.json").write_text(text)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    torch.manual_seed(0)
    checkpoints.write_weights(get_model("lenet5"), tmp_path / "mnist" / "good.safetensors",
                              {"arch": "lenet5", "dataset": "mnist"})
    return tmp_path


@pytest.mark.parametrize("case", BROKEN_MANIFESTS)
def test_a_broken_runs_manifest_leaves_the_shipped_models_working(runs, case):
    write_runs_manifest(runs, case)
    shipped = checkpoints.find_models("mnist", include_runs=False)
    found = checkpoints.find_models("mnist")
    whole_file_broken = BROKEN_MANIFESTS[case][0] in ("{not json", '{"models": 5}')
    assert found == shipped + ([] if whole_file_broken else checkpoints.read_manifest(runs))
    if not whole_file_broken:  # a bad record is that record's problem alone
        assert [r.name for r in checkpoints.read_manifest(runs)] == ["good"]
    [problem] = checkpoints.manifest_problems()
    assert str(runs / "manifest.json") in problem and BROKEN_MANIFESTS[case][1] in problem
    assert len(Ensemble.for_dataset("mnist")) == len(found)


@pytest.mark.parametrize("case", ["invalid JSON", "date a number"])
def test_saving_beside_a_broken_manifest_loses_nothing(runs, case):
    write_runs_manifest(runs, case)
    before = (runs / "manifest.json").read_text()
    save_lenet(runs, "new")
    if case == "invalid JSON":  # kept beside the new manifest, for whoever mends it
        [aside] = runs.glob("manifest.json.broken-*")
        assert aside.read_text() == before
        assert [r.name for r in checkpoints.read_manifest(runs)] == ["new"]
    else:  # the bad entry stays in the file as it was
        entries = json.loads((runs / "manifest.json").read_text())["models"]
        assert {"name": "bad", "date": 5}.items() <= entries[-1].items()
        assert sorted(r.name for r in checkpoints.read_manifest(runs)) == ["good", "new"]


def test_commands_and_pages_work_with_a_broken_runs_manifest(runs, mnist_test):
    from PIL import Image

    write_runs_manifest(runs, "invalid JSON")
    Image.fromarray(mnist_test.images[0].numpy()).save(runs / "seven.png")
    done = run_cli("predict", str(runs / "seven.png"), "--json", runs=runs)
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert row["consensus"]["digit"] == 7
    assert len(row["models"]) == len(checkpoints.find_models("mnist", include_runs=False))
    assert "warning: " in done.stderr and "is not a valid manifest" in done.stderr
    for page in ("lab.py", "app_pages/1_Train.py"):
        at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=120)
        if page != "lab.py":
            at.switch_page(page)
        at.run()
        assert not at.exception, page
        assert any("is not a valid manifest" in w.value for w in at.sidebar.warning), page


# --- 6. hostile metadata in a weights file ------------------------------------------------------

HOSTILE_METADATA = [
    ({"width": "inf"}, "width='inf' is not a number between"),
    ({"width": "nan"}, "width='nan' is not a number between"),
    ({"width": "4000"}, "width='4000' is not a number between"),
    ({"width": "-1"}, "width='-1'"),
    ({"width": "wide"}, "width='wide'"),
    ({"num_classes": "-1"}, "num_classes='-1' is not a whole number"),
    ({"num_classes": "1000000000"}, "num_classes='1000000000'"),
    ({"num_classes": "2.5"}, "num_classes='2.5'"),
    ({"arch": "../../etc"}, "unknown architecture '../../etc'"),
]


@pytest.mark.parametrize(("metadata", "message"), HOSTILE_METADATA)
def test_hostile_metadata_is_refused_before_a_model_is_built(tmp_path, monkeypatch, metadata, message):
    path = tmp_path / "hostile.safetensors"
    save_file(get_model("lenet5").state_dict(), path, metadata={"arch": "lenet5", **metadata})

    def no_building(*args, **kwargs):
        raise AssertionError("a model must not be built from hostile metadata")

    monkeypatch.setattr(checkpoints, "get_model", no_building)
    with pytest.raises(checkpoints.CheckpointError, match=message.replace("(", r"\(").replace(".", r"\.")):
        checkpoints.load(path)


def test_an_ensemble_leaves_a_hostile_file_out_and_the_others_answer(tmp_path, mnist_test):
    good = save_lenet(tmp_path, "good")
    hostile = save_lenet(tmp_path, "hostile")
    tensors, _ = checkpoints.read_weights(hostile.path)
    save_file(tensors, hostile.path, metadata={"arch": "lenet5", "width": "inf"})
    ensemble = Ensemble([good, hostile])
    assert len(ensemble) == 1 and "width='inf'" in ensemble.problems["hostile (run)"]
    assert ensemble.predict(data.normalize(mnist_test.images[:1], "mnist"))[0].answers


# --- 7. a record's file is a regular file inside its folder ---------------------------------------

def test_a_record_pointing_outside_its_folder_is_never_opened(tmp_path):
    record = save_lenet(tmp_path, "x")
    for file in ("../../../etc/passwd", "/etc/passwd", "mnist/../../outside.safetensors"):
        with pytest.raises(checkpoints.CheckpointError, match="not a .safetensors path inside|points outside"):
            checkpoints.load_record(checkpoints.ModelRecord(**{**record.to_json(), "file": file}, folder=tmp_path))
    (tmp_path / "mnist" / "link.safetensors").symlink_to(record.path.resolve().parent.parent.parent / "x.safetensors")
    with pytest.raises(checkpoints.CheckpointError, match="points outside"):
        checkpoints.load_record(checkpoints.ModelRecord(**{**record.to_json(), "file": "mnist/link.safetensors"},
                                                        folder=tmp_path))


def test_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "mnist" / "pipe.safetensors"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    # In a process of its own: opening a FIFO blocks until a writer comes, holding the whole interpreter.
    done = subprocess.run([sys.executable, "-c", f"from core import checkpoints; checkpoints.load({str(fifo)!r})"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "pipe.safetensors: not a regular file" in done.stderr


# --- 8. a model that answers NaN ------------------------------------------------------------------

def nan_lenet(folder: Path) -> checkpoints.ModelRecord:
    record = save_lenet(folder, "nan")
    tensors, metadata = checkpoints.read_weights(record.path)
    tensors["features.0.weight"][0, 0, 0, 0] = float("nan")
    save_file(tensors, record.path, metadata=metadata)
    return record


def test_nan_weights_are_refused_at_load_and_the_others_agree(tmp_path, mnist_test):
    healthy = [save_lenet(tmp_path, f"ok{i}", seed=i) for i in range(2)]
    ensemble = Ensemble([*healthy, nan_lenet(tmp_path)])
    assert "hold NaN or infinite values" in ensemble.problems["nan (run)"]
    [prediction] = ensemble.predict(data.normalize(mnist_test.images[:1], "mnist"))
    assert len(prediction.answers) == 2 and torch.isfinite(prediction.probabilities).all()


class Overflowing(torch.nn.Module):
    """A model with finite weights whose logits overflow (inf - inf: NaN probabilities)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * float("inf")


def test_a_model_whose_output_is_not_finite_is_left_out_of_that_answer(tmp_path, mnist_test):
    healthy = [save_lenet(tmp_path, f"ok{i}", seed=i) for i in range(2)]
    exploding = save_lenet(tmp_path, "huge")
    ensemble = Ensemble([*healthy, exploding])
    record, model = ensemble.models[-1]
    ensemble.models[-1] = (record, Overflowing(model))
    [prediction] = ensemble.predict(data.normalize(mnist_test.images[:1], "mnist"))
    assert [a.name for a in prediction.answers] == ["ok0", "ok1"]
    assert "not a number" in prediction.left_out["huge (run)"]
    assert prediction.dissenters == [] or all(d.startswith("ok") for d in prediction.dissenters)
    json.dumps(prediction.to_json(data.get_spec("mnist").classes), allow_nan=False)


def test_json_output_is_always_valid_json(tmp_path):
    nan_lenet(tmp_path)
    done = run_cli("eval", "--only", "runs", "--json", runs=tmp_path)

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    [row] = json.loads(done.stdout, parse_constant=refuse)
    assert "hold NaN or infinite values" in row["error"]


# --- 13. predict reads regular files of a picture's size only -------------------------------------

def test_predict_refuses_a_device_without_reading_it(tmp_path):
    import resource

    def at_most_8_gb():  # the old code read /dev/zero until memory ran out: let it fail fast instead
        resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))

    done = subprocess.run([sys.executable, "-m", "core", "predict", "/dev/zero", "--json"], cwd=REPO,
                          env={**os.environ, checkpoints.RUNS_ENV: str(tmp_path)}, capture_output=True, text=True,
                          timeout=120, preexec_fn=at_most_8_gb)
    assert done.returncode == 1, done.stderr
    [row] = json.loads(done.stdout)
    assert "/dev/zero is a device, pipe or socket, not a picture file" in row["error"]


# --- 17. a folder that cannot be written, found before the run ------------------------------------

def test_the_queue_refuses_a_run_it_could_not_save(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    manager = JobManager(folder=blocker / "runs")
    with pytest.raises(checkpoints.CheckpointError, match="cannot save into"):
        manager.submit(TrainConfig(arch="lenet5", epochs=1, limit=100), name="x", owner="ann")
    assert manager.snapshots() == []


def test_cgan_outputs_are_checked_before_generating(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_cli("cgan", "sample", "--out", str(blocker / "grid.png"), runs=tmp_path)
    assert done.returncode == 2 and "cannot save into" in done.stderr


# --- 19. run names are text, and a run is never taken for a shipped model -------------------------

def test_a_run_named_like_a_shipped_model_is_labelled_as_a_run(runs):
    record = save_lenet(runs, "lenet5")
    assert record.name == "lenet5" and record.label == "lenet5 (run)"
    labels = [r.label for r in checkpoints.find_models("mnist")]
    assert labels.count("lenet5") == 1 and labels.count("lenet5 (run)") == 1
    at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=120)
    at.switch_page("app_pages/4_Inside.py")
    at.run()
    [everyone] = [t for t in at.sidebar.toggle if t.label == "Everyone's runs"]  # a command-line run is no student's
    everyone.set_value(True).run()
    assert not at.exception
    [model_box] = [s for s in at.selectbox if s.label == "Model"]
    assert "lenet5" in model_box.options and "lenet5 (run)" in model_box.options
    assert model_box.value == "lenet5"  # the shipped one stays the default


def test_run_names_are_shown_as_text_not_markdown():
    import ui

    hostile = "![x](http://e.invalid/x.png) [link](http://e.invalid) :red[big] # **bold**"
    shown = ui.plain(hostile)
    for markup in ("![", "](", ":red[", "**", "# "):
        assert markup not in shown.replace("\\", "") or f"\\{markup[0]}" in shown
    assert shown.replace("\\", "") == hostile  # every character is still there


# --- 20. absurd numbers and output paths ---------------------------------------------------------

def test_an_absurd_seed_is_refused_with_its_range(tmp_path):
    done = run_cli("train", "--arch", "lenet5", "--seed", "99999999999999999999", runs=tmp_path)
    assert done.returncode == 2 and "must be a whole number from 0 to 9223372036854775807" in done.stderr
    assert "Overflow" not in done.stderr


def test_cgan_sample_refuses_an_out_that_is_neither_png_nor_folder(tmp_path):
    done = run_cli("cgan", "sample", "--out", str(tmp_path / "g.jpg"), runs=tmp_path)
    assert done.returncode == 2 and "name a .png file for one grid, or a folder" in done.stderr
    assert not (tmp_path / "g.jpg").exists()
