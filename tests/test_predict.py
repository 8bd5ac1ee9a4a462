"""Every trained model answering one input together."""

from __future__ import annotations

import pytest
import torch

from core import checkpoints, data
from core.models import get_model
from core.predict import Ensemble

SUMMARY = {"test_accuracy": 50.0, "epochs": 1, "seconds": 1.0, "device": "CPU", "config": {}}


@pytest.fixture
def records(tmp_path):
    saved = []
    for seed, (arch, name) in enumerate([("lenet5", "a"), ("mlp", "b"), ("lenet5-relu", "c")]):
        torch.manual_seed(seed)
        saved.append(checkpoints.save_classifier(get_model(arch), name=name, arch=arch, dataset="mnist",
                                                 summary=SUMMARY, folder=tmp_path))
    return saved


def test_every_model_answers_and_the_consensus_is_their_mean(records, mnist_test):
    ensemble = Ensemble(records)
    assert len(ensemble) == 3 and not ensemble.problems
    x = data.normalize(mnist_test.images[:4], "mnist")
    predictions = ensemble.predict(x)
    assert len(predictions) == 4
    for prediction in predictions:
        assert [a.name for a in prediction.answers] == ["a", "b", "c"]
        for answer in prediction.answers:
            assert answer.probabilities.shape == (10,) and answer.milliseconds >= 0
            assert answer.probabilities.sum().item() == pytest.approx(1, abs=1e-5)
        mean = torch.stack([a.probabilities for a in prediction.answers]).mean(0)
        assert torch.allclose(prediction.probabilities, mean)
        assert prediction.top == int(mean.argmax())
        assert set(prediction.dissenters) == {f"{a.name} (run)" for a in prediction.answers if a.top != prediction.top}
    document = predictions[0].to_json(data.get_spec("mnist").classes)
    assert set(document["consensus"]) == {"digit", "label", "probability"}
    assert len(document["models"]) == 3 and len(document["models"][0]["probabilities"]) == 10


def test_a_broken_file_is_left_out_and_the_others_answer(records):
    records[1].path.write_bytes(b"broken")
    ensemble = Ensemble(records)
    assert [record.name for record, _ in ensemble.models] == ["a", "c"]
    assert "b.safetensors: not a readable safetensors file" in ensemble.problems["b (run)"]  # a run, as pages label it
    assert len(ensemble.predict(torch.zeros(1, 1, 28, 28))[0].answers) == 2


def test_no_models_is_a_clear_error():
    with pytest.raises(ValueError, match="no trained models"):
        Ensemble([]).predict(torch.zeros(1, 1, 28, 28))


def test_what_a_student_sees_shares_the_loaded_models(tmp_path):
    ann, bob = "0123456789abcdef", "fedcba9876543210"
    torch.manual_seed(0)
    run = checkpoints.save_classifier(get_model("lenet5"), name="ann's", arch="lenet5", dataset="mnist",
                                      summary=SUMMARY, folder=tmp_path, owner=ann)
    shipped = checkpoints.find_models("mnist", include_runs=False)[:2]
    everything = Ensemble([*shipped, run])
    for owner, expected in ((ann, [*shipped, run]), (bob, shipped), (None, [*shipped, run])):
        seen = everything.seen_by(owner)
        assert [record for record, _ in seen.models] == expected
        assert all(any(model is m for _, m in everything.models) for _, model in seen.models)  # nothing reloaded
