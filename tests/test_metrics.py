"""core/metrics.py: per-class accuracy, mistakes and hardest examples by hand; test-set answers and their cache."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from core import checkpoints, metrics, zoo
from core.models import get_model
from core.training import evaluate


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


def test_predictions_match_the_manifest_and_are_cached(tmp_path, monkeypatch, mnist_test, cheapest_shipped):
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    shipped = cheapest_shipped[0]
    folder = tmp_path / "elsewhere"  # a copy without the answers shipped beside it
    (folder / "mnist").mkdir(parents=True)
    shutil.copy(shipped.path, folder / shipped.file)
    record = replace(shipped, folder=folder)
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


def test_the_shipped_models_answers_are_shipped_and_are_theirs(tmp_path, monkeypatch, mnist_test, cheapest_shipped):
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))  # an empty cache: a fresh checkout
    for record in checkpoints.find_models(include_runs=False):
        assert metrics.cached_predictions(record, 10_000) is not None, record.label
    for record in cheapest_shipped[:2]:
        shipped = metrics.cached_predictions(record, len(mnist_test))
        computed = evaluate(checkpoints.load_record(record), mnist_test, "mnist").predictions
        assert torch.equal(shipped.predicted, computed)
    assert not (tmp_path / "cache").exists()  # nothing was computed


def test_shipping_answers_again_replaces_those_of_the_file_it_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path / "runs"))
    summary = {"test_accuracy": 1.0, "epochs": 1, "seconds": 1.0, "device": "CPU"}
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        record = checkpoints.save_classifier(get_model("lenet5"), name="lenet5", arch="lenet5", dataset="mnist",
                                             summary=summary, ship=True, folder=tmp_path / "weights")
        paths.append(metrics.ship_predictions(record))
    assert paths[0] != paths[1] and sorted((tmp_path / "weights" / "predictions").iterdir()) == [paths[1]]
    assert metrics.cached_predictions(record, 10_000) is not None
