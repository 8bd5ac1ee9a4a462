from __future__ import annotations

import pytest
import torch

from core import data
from core.models import get_model
from core.training import Callback, TrainConfig, Trainer, TrainingError, evaluate, outputs_loss, train


class Recorder(Callback):
    def __init__(self):
        self.steps, self.epochs, self.evaluated = [], [], False

    def on_step(self, event):
        self.steps.append(event)

    def on_epoch_end(self, event):
        self.epochs.append(event)

    def on_evaluate(self):
        self.evaluated = True


def test_lenet_learns_from_3000_real_images(mnist_test):
    config = TrainConfig(arch="lenet5", epochs=5, batch_size=64, lr=1e-2, optimizer="adamw",
                         schedule="onecycle", augment=False, val_split=0.1, limit=3000, seed=0)
    recorder = Recorder()
    result = train(config, callback=recorder)
    accuracy = evaluate(result.model, mnist_test.subset(slice(0, 1000)), "mnist").accuracy
    assert accuracy > 90
    assert result.status == "completed" and len(result.history) == 5
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert recorder.evaluated and len(recorder.epochs) == 5
    assert recorder.steps[-1].global_step == 5 * 43  # ceil(2700 / 64) steps per epoch
    assert result.train_samples_per_s > 0
    assert result.test.predictions.shape == (10_000,)
    summary = result.summary()
    assert summary["test_accuracy"] == round(result.test_accuracy, 2)
    assert summary["config"]["arch"] == "lenet5"


def test_early_stopping_stops_and_restores_the_best_weights():
    # 200 images and a high constant learning rate overfit within a few epochs
    config = TrainConfig(arch="lenet5-relu", epochs=40, batch_size=32, lr=1e-2, optimizer="adam",
                         schedule="constant", augment=False, val_split=0.25, limit=200, patience=2)
    trainer = Trainer(config)
    result = trainer.fit()
    assert result.status == "early-stopped"
    assert len(result.history) < 40
    assert len(result.history) == result.best_epoch + 2
    best = result.history[result.best_epoch - 1]
    scores = [(-e.val_accuracy, e.val_loss) for e in result.history]
    assert best.improved and (-best.val_accuracy, best.val_loss) == min(scores)
    assert evaluate(result.model, trainer.val_split, "mnist").loss == pytest.approx(best.val_loss, rel=1e-4)


def test_stop_flag_is_honoured_within_one_batch():
    recorder = Recorder()
    config = TrainConfig(arch="lenet5", epochs=2, limit=2000, batch_size=50, log_every=1)
    result = train(config, callback=recorder, stop=lambda: len(recorder.steps) >= 3)
    assert result.status == "stopped"
    assert len(recorder.steps) == 3
    assert result.history == []  # the unfinished epoch is not reported as an epoch
    assert result.test.predictions.shape == (10_000,)


def test_absurd_learning_rate_ends_with_the_divergence_error():
    config = TrainConfig(arch="lenet5-relu", epochs=1, lr=1e4, optimizer="sgd", schedule="constant",
                         limit=640, batch_size=64, log_every=5)
    with pytest.raises(TrainingError, match=r"diverged at epoch 1, step \d+.*Lower the learning rate"):
        train(config)


def test_same_seed_same_run():
    config = TrainConfig(arch="lenet5", epochs=1, limit=300, batch_size=50, log_every=1)
    first, second = Recorder(), Recorder()
    train(config, callback=first)
    train(config, callback=second)
    assert [e.loss for e in first.steps] == [e.loss for e in second.steps]


@pytest.mark.parametrize(
    "field, value, message",
    [("lr", -1.0, "lr must be a positive number"), ("lr", float("nan"), "lr must be"),
     ("epochs", 0, "epochs must be at least 1"), ("batch_size", 100_000, "batch_size must be between"),
     ("optimizer", "rmsprop", "optimizer must be one of"), ("val_split", 0.9, "val_split"),
     ("arch", "lenet6", "unknown architecture 'lenet6'"), ("dataset", "cifar", "unknown dataset")],
)
def test_bad_settings_are_named(field, value, message):
    config = TrainConfig(**{field: value})
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_auxiliary_outputs_add_weighted_losses():
    labels = torch.tensor([0, 1])
    main, aux1, aux2 = torch.randn(2, 10), torch.randn(2, 10), torch.randn(2, 10)
    plain, logits = outputs_loss(main, labels)
    combined, logits_again = outputs_loss((main, aux1, aux2), labels)
    assert logits_again is main and logits is main
    expected = plain + 0.3 * (outputs_loss(aux1, labels)[0] + outputs_loss(aux2, labels)[0])
    assert combined.item() == pytest.approx(expected.item())


def test_googlenet_trains_its_auxiliary_heads_and_answers_plainly_in_eval():
    config = TrainConfig(arch="googlenet", epochs=1, limit=64, batch_size=32, val_split=0.0)
    torch.manual_seed(config.seed)
    initial = get_model("googlenet").state_dict()
    result = train(config)
    trained = result.model.state_dict()
    aux = [k for k in trained if k.startswith("aux")]
    assert aux and any(not torch.equal(trained[k], initial[k]) for k in aux)
    result.model.eval()
    assert isinstance(result.model(data.normalize(torch.zeros(2, 28, 28, dtype=torch.uint8), "mnist")),
                      torch.Tensor)


@pytest.mark.parametrize("warp, erase", [(True, 0.0), (False, 0.0), (False, 0.5)])
def test_the_config_chooses_the_augmentation(monkeypatch, warp, erase):
    seen = {"warp": [], "erase": []}
    real_augment, real_erase = data.augment, data.erase

    def spy_augment(x, **options):
        seen["warp"].append(options.get("max_degrees", 10.0) > 0)
        return real_augment(x, **options)

    def spy_erase(x, share, **options):
        seen["erase"].append(share)
        return real_erase(x, share, **options)

    monkeypatch.setattr(data, "augment", spy_augment)
    monkeypatch.setattr(data, "erase", spy_erase)
    config = TrainConfig(arch="mlp", epochs=1, batch_size=100, limit=300, val_split=0, warp=warp, erase=erase)
    Trainer(config).fit()
    assert seen["warp"] == [warp] * 3
    assert seen["erase"] == ([erase] * 3 if erase else [])


def test_an_erase_share_outside_0_to_1_is_refused():
    with pytest.raises(ValueError, match="erase must be in"):
        TrainConfig(erase=1.5).validate()
