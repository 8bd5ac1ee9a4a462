from __future__ import annotations

import errno
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from core import checkpoints
from core.models import get_model

SUMMARY = {"test_accuracy": 98.76, "epochs": 2, "seconds": 12.5, "device": "CPU, 2 threads",
           "config": {"arch": "lenet5", "width": 1.0}, "history": [{"epoch": 1}, {"epoch": 2}]}


def saved_lenet(folder, name="my-run"):
    torch.manual_seed(0)
    model = get_model("lenet5")
    record = checkpoints.save(model, name=name, arch="lenet5", dataset="mnist", summary=SUMMARY, folder=folder)
    return model, record


def test_round_trip_keeps_every_tensor_and_the_manifest_entry(tmp_path):
    model, record = saved_lenet(tmp_path)
    assert record.path == tmp_path / "mnist" / "my-run.safetensors"
    loaded = checkpoints.load(record.path, arch="lenet5")
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    [entry] = checkpoints.read_manifest(tmp_path)
    assert entry == record
    assert entry.test_accuracy == 98.76 and entry.epochs == 2 and entry.device == "CPU, 2 threads"
    assert entry.code_version and entry.date and entry.config["arch"] == "lenet5"
    assert not entry.shipped


def test_a_run_saved_under_a_taken_name_gets_a_name_and_file_of_its_own(tmp_path):
    saved_lenet(tmp_path)
    saved_lenet(tmp_path)
    saved_lenet(tmp_path, name="other")
    records = checkpoints.read_manifest(tmp_path)
    assert sorted(r.name for r in records) == ["my-run", "my-run-2", "other"]
    assert sorted(r.file for r in records) == ["mnist/my-run-2.safetensors", "mnist/my-run.safetensors",
                                               "mnist/other.safetensors"]


def test_overwrite_replaces_the_shipped_model_and_its_entry(tmp_path):
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = get_model("lenet5")
        record = checkpoints.save(model, name="lenet5", arch="lenet5", dataset="mnist", summary=SUMMARY,
                                  folder=tmp_path, overwrite=True)
    [entry] = checkpoints.read_manifest(tmp_path)
    assert entry.file == "mnist/lenet5.safetensors" == record.file
    assert torch.equal(checkpoints.load(record.path).state_dict()["features.0.weight"],
                       model.state_dict()["features.0.weight"])


def test_half_precision_files_load_as_float32(tmp_path):
    torch.manual_seed(0)
    model = get_model("resnet18")
    record = checkpoints.save(model, name="resnet18", arch="resnet18", dataset="mnist", summary=SUMMARY,
                              folder=tmp_path, half=True)
    loaded = checkpoints.load(record.path)
    weight = loaded.state_dict()
    for key, value in model.state_dict().items():
        assert weight[key].dtype == value.dtype
        assert torch.allclose(weight[key].float(), value.float(), rtol=1e-3, atol=1e-4), key


def test_truncated_file_is_named(tmp_path):
    _, record = saved_lenet(tmp_path)
    payload = record.path.read_bytes()
    record.path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(checkpoints.CheckpointError, match=r"my-run\.safetensors: not a readable safetensors"):
        checkpoints.load(record.path)


def test_wrong_architecture_is_named(tmp_path):
    _, record = saved_lenet(tmp_path)
    with pytest.raises(checkpoints.CheckpointError, match="holds 'lenet5' weights, not 'resnet18'"):
        checkpoints.load(record.path, arch="resnet18")


def test_tensors_of_another_model_are_named(tmp_path):
    path = tmp_path / "liar.safetensors"
    save_file(get_model("mlp").state_dict(), path, metadata={"arch": "lenet5"})
    with pytest.raises(checkpoints.CheckpointError, match="does not match 'lenet5': missing .*unexpected"):
        checkpoints.load(path)
    shapes = {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) if v.ndim else v
              for k, v in get_model("lenet5").state_dict().items()}
    save_file(shapes, path, metadata={"arch": "lenet5"})
    with pytest.raises(checkpoints.CheckpointError, match=r"is \(7, 1, 5, 5\), expected \(6, 1, 5, 5\)"):
        checkpoints.load(path)


def test_pickles_are_refused_and_never_unpickled(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    torch.save(get_model("lenet5").state_dict(), path)

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load must never be called on a weights file")

    monkeypatch.setattr(torch, "load", forbidden)
    with pytest.raises(checkpoints.CheckpointError, match="not a readable safetensors file"):
        checkpoints.load(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="nope.safetensors: the weights file is missing"):
        checkpoints.load(tmp_path / "nope.safetensors")


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    _, record = saved_lenet(tmp_path)
    before = record.path.read_bytes()
    manifest_before = (tmp_path / "manifest.json").read_text()

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    torch.manual_seed(1)
    with pytest.raises(checkpoints.CheckpointError, match="No space left on device"):
        checkpoints.save(get_model("lenet5"), name="my-run", arch="lenet5", dataset="mnist",
                         summary=SUMMARY, folder=tmp_path)
    assert record.path.read_bytes() == before
    assert (tmp_path / "manifest.json").read_text() == manifest_before
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == ["my-run.safetensors"]


def test_corrupt_manifest_is_named_and_hides_only_its_own_models(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    manifest = checkpoints.load_manifest(tmp_path)
    assert manifest.records == [] and manifest.unreadable
    [problem] = manifest.problems
    assert "manifest.json is not a valid manifest" in problem and "move it aside" in problem


def test_run_names_become_safe_file_names(tmp_path):
    assert checkpoints.file_stem("my run/../x", "lenet5") == "my-run-..-x"
    _, record = saved_lenet(tmp_path, name="Anna's LeNet (try 2)")
    assert record.path.name == "Anna-s-LeNet-try-2.safetensors"
    assert record.name == "Anna's LeNet (try 2)"
    _, record = saved_lenet(tmp_path, name="///")
    assert record.path.name == "lenet5.safetensors" and record.name == "///"


def test_find_models_lists_runs_after_shipped(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    saved_lenet(tmp_path)
    found = checkpoints.find_models("mnist")
    assert found[-1].name == "my-run" and not found[-1].shipped
    assert all(r.shipped for r in found[:-1])
    assert checkpoints.find_models("fashion", include_runs=True) == [
        r for r in checkpoints.find_models("fashion") if r.shipped
    ]
    assert json.loads((tmp_path / "manifest.json").read_text())["models"][0]["file"] == "mnist/my-run.safetensors"
