from __future__ import annotations

import errno
import json
import os
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from core import checkpoints, data
from core.models import get_model
from core.training import evaluate

SUMMARY = {"test_accuracy": 98.76, "epochs": 2, "seconds": 12.5, "device": "CPU, 2 threads",
           "config": {"arch": "lenet5", "width": 1.0}, "history": [{"epoch": 1}, {"epoch": 2}]}


def saved_lenet(folder, name="my-run"):
    torch.manual_seed(0)
    model = get_model("lenet5")
    record = checkpoints.save_classifier(model, name=name, arch="lenet5", dataset="mnist", summary=SUMMARY,
                                         folder=folder)
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
        record = checkpoints.save_classifier(model, name="lenet5", arch="lenet5", dataset="mnist", summary=SUMMARY,
                                             folder=tmp_path, ship=True)
    [entry] = checkpoints.read_manifest(tmp_path)
    assert entry.file == "mnist/lenet5.safetensors" == record.file
    assert torch.equal(checkpoints.load(record.path).state_dict()["features.0.weight"],
                       model.state_dict()["features.0.weight"].half().float())  # shipped files hold float16


def test_one_save_decides_folder_precision_and_the_figures_of_the_file_as_written(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path / "runs"))
    torch.manual_seed(0)
    model = get_model("lenet5")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = checkpoints.save_classifier(model, name="mine", arch="lenet5", dataset="mnist", summary=SUMMARY)
    assert run.folder == tmp_path / "runs" and run.metrics == {"test_accuracy": 98.76}  # as its training measured
    assert checkpoints.read_weights(run.path)[0]["features.0.weight"].dtype == torch.float32

    shipped = checkpoints.save_classifier(model, name="lenet5", arch="lenet5", dataset="mnist", summary=SUMMARY,
                                          ship=True)
    assert shipped.folder == tmp_path / "weights" and shipped.shipped
    assert checkpoints.read_weights(shipped.path)[0]["features.0.weight"].dtype == torch.float16
    # measured again on what the file holds, not on the float32 weights nor taken from the summary
    written = checkpoints.load(shipped.path)
    test = data.load("mnist", train=False)
    assert shipped.metrics["test_accuracy"] == round(evaluate(written, test, "mnist").accuracy, 2) != 98.76
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model is untouched

    seen = []
    record = checkpoints.ModelRecord(name="x", arch="lenet5", dataset="mnist", file="mnist/x.safetensors", epochs=1,
                                     seconds=1.0, device="CPU", date="d", code_version="v")
    checkpoints.save(model, record, {"arch": "lenet5"}, ship=True,
                     measure=lambda m: seen.append(m) or {"test_accuracy": 1.0})
    assert seen[0].features[0].weight.equal(before["features.0.weight"].half().float())
    with pytest.raises(ValueError, match="measured again"):
        checkpoints.save(model, record, {"arch": "lenet5"}, ship=True)
    with pytest.raises(ValueError, match="a classifier's record needs its test_accuracy"):
        checkpoints.save(model, record, {"arch": "lenet5"})  # an entry no page could show is never written


def test_manifests_written_before_kinds_and_metrics_load_and_are_rewritten_in_the_new_form(tmp_path):
    old = {"date": "d", "code_version": "v", "epochs": 1, "seconds": 1.0, "device": "CPU", "config": {}, "history": []}
    scores = {"agreement": 99.1, "fid": 0.5, "judge": "resnet18"}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [
        {**old, "name": "lenet5", "arch": "lenet5", "dataset": "mnist", "file": "mnist/lenet5.safetensors",
         "test_accuracy": 98.9},
        {**old, "name": "cgan-generator", "arch": "cgan-generator", "dataset": "mnist",
         "file": "mnist/cgan-generator.safetensors", "test_accuracy": 99.1, "scores": scores},
    ]}))
    classifier, generator = checkpoints.read_manifest(tmp_path)
    assert (classifier.kind, classifier.metrics, classifier.test_accuracy) == ("classifier", {"test_accuracy": 98.9},
                                                                              98.9)
    assert (generator.kind, generator.metrics) == ("generator", scores)
    with pytest.raises(AttributeError, match="is a generator"):
        generator.test_accuracy  # noqa: B018 - a generator's agreement is not an accuracy

    checkpoints.add_record(tmp_path, replace(classifier, name="renamed"))  # any save rewrites the whole manifest
    entries = json.loads((tmp_path / "manifest.json").read_text())["models"]
    assert all("test_accuracy" not in e and "scores" not in e and e["kind"] in checkpoints.KINDS for e in entries)
    assert sorted(checkpoints.read_manifest(tmp_path), key=lambda r: r.kind) == [replace(classifier, name="renamed"),
                                                                                generator]


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "painter"}, "kind 'painter' is not one of classifier, generator"),
    ({"metrics": {"test_loss": 0.1}}, "test_accuracy is None, not a number"),
    ({"kind": "generator", "metrics": {"agreement": float("nan")}}, "agreement is nan, not a number"),
])
def test_a_record_of_an_unknown_kind_or_without_its_headline_metric_is_left_out(tmp_path, change, message):
    _, record = saved_lenet(tmp_path)
    entry = {**record.to_json(), **change}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": [entry]}))
    manifest = checkpoints.load_manifest(tmp_path)
    assert manifest.records == [] and message in manifest.problems[0]


def test_half_precision_files_load_as_float32(tmp_path):
    torch.manual_seed(0)
    model = get_model("resnet18")
    record = checkpoints.ModelRecord(name="resnet18", arch="resnet18", dataset="mnist",
                                     file="mnist/resnet18.safetensors", epochs=1, seconds=1.0, device="CPU", date="d",
                                     code_version="v")
    record = checkpoints.save(model, record, {"arch": "resnet18"}, ship=True, folder=tmp_path,
                              measure=lambda written: {"test_accuracy": 1.0})
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
        checkpoints.save_classifier(get_model("lenet5"), name="my-run", arch="lenet5", dataset="mnist",
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


def test_a_manifest_is_parsed_again_only_when_its_file_changes(tmp_path, monkeypatch):
    saved_lenet(tmp_path)
    parsed = []
    parse = checkpoints._parse_manifest
    monkeypatch.setattr(checkpoints, "_parse_manifest", lambda folder: parsed.append(folder) or parse(folder))
    first = checkpoints.read_manifest(tmp_path)
    for _ in range(5):  # what every page rerun asks
        assert checkpoints.read_manifest(tmp_path) == first
    assert len(parsed) <= 1

    saved_lenet(tmp_path, name="second")  # a save replaces the file: seen at once
    assert [r.name for r in checkpoints.read_manifest(tmp_path)] == ["my-run", "second"]
    text = (tmp_path / "manifest.json").read_text().replace('"second"', '"edited by hand"')
    (tmp_path / "manifest.json").write_text(text)  # in place, another size
    assert [r.name for r in checkpoints.read_manifest(tmp_path)] == ["my-run", "edited by hand"]
    with pytest.raises(AttributeError):
        first[0].name = "changed"  # records are shared between readers: nobody may change one


def test_a_run_is_its_owners_to_see_and_to_delete(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    torch.manual_seed(0)
    run = checkpoints.save_classifier(get_model("lenet5"), name="ann's", arch="lenet5", dataset="mnist",
                                      summary=SUMMARY, owner="0123456789abcdef")
    [listed] = checkpoints.read_manifest(tmp_path)
    assert listed.owner == "0123456789abcdef"
    assert run.seen_by("0123456789abcdef") and run.seen_by(None) and not run.seen_by("fedcba9876543210")
    shipped = checkpoints.find_models("mnist", include_runs=False)[0]
    assert shipped.seen_by("fedcba9876543210")  # the shipped models are everyone's

    with pytest.raises(ValueError, match="someone else's run"):
        checkpoints.delete_run(run, owner="fedcba9876543210")
    with pytest.raises(ValueError, match="shipped with the lab"):
        checkpoints.delete_run(shipped, owner=None)
    assert run.path.exists() and checkpoints.read_manifest(tmp_path) == [run]
    checkpoints.delete_run(run, owner="0123456789abcdef")
    assert not run.path.exists() and checkpoints.read_manifest(tmp_path) == []
    assert shipped.path.exists()
