from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
import torch

from core import data, training
from core.models import list_models
from core.recipes import recipe
from core.training import (
    Callback,
    Diverged,
    Evaluation,
    TrainConfig,
    Trainer,
    TrainingError,
    estimate_memory,
    evaluate,
    outputs_loss,
    train,
)


class Recorder(Callback):
    def __init__(self):
        self.steps, self.epochs, self.evaluated = [], [], False

    def on_step(self, trainer, event):
        self.steps.append(event)

    def on_epoch_end(self, trainer, event):
        self.epochs.append(event)

    def on_evaluate(self, trainer):
        self.evaluated = True


def test_lenet_learns_from_3000_real_images(mnist_test):
    config = TrainConfig(arch="lenet5", epochs=5, batch_size=64, lr=1e-2, optimizer="adamw",
                         schedule="onecycle", augment=False, val_split=0.1, limit=3000, seed=0)
    recorder = Recorder()
    result = train(config, callbacks=[recorder])
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


class StopAfterSteps(Callback):
    """Asks the run to stop, as the job queue's stop button does, once it has heard of ``steps`` steps."""

    def __init__(self, recorder, steps):
        self.recorder, self.steps = recorder, steps

    def on_step(self, trainer, event):
        if len(self.recorder.steps) >= self.steps:
            trainer.should_stop = True


def test_stop_flag_is_honoured_within_one_batch():
    recorder = Recorder()
    config = TrainConfig(arch="lenet5", epochs=2, limit=2000, batch_size=50, log_every=1)
    result = train(config, callbacks=[recorder, StopAfterSteps(recorder, 3)])
    assert result.status == "stopped"
    assert len(recorder.steps) == 3
    assert result.history == []  # the unfinished epoch is not reported as an epoch
    assert result.test.predictions.shape == (10_000,)


def test_a_stop_asked_for_before_fit_stops_before_the_first_batch():
    # as the job queue's stop button pressed while the data loads
    recorder = Recorder()
    trainer = Trainer(TrainConfig(arch="lenet5", epochs=2, limit=200, batch_size=50), callbacks=[recorder])
    trainer.should_stop = True
    result = trainer.fit()
    assert result.status == "stopped" and result.history == [] and recorder.steps == []
    assert recorder.evaluated and result.test.predictions.shape == (10_000,)


def test_absurd_learning_rate_ends_with_the_divergence_error():
    config = TrainConfig(arch="lenet5-relu", epochs=1, lr=1e4, optimizer="sgd", schedule="constant",
                         limit=640, batch_size=64, log_every=5)
    with pytest.raises(TrainingError, match=r"diverged at epoch 1, step \d+.*Lower the learning rate"):
        train(config)


def test_same_seed_same_run():
    config = TrainConfig(arch="lenet5", epochs=1, limit=300, batch_size=50, log_every=1)
    first, second = Recorder(), Recorder()
    train(config, callbacks=[first])
    train(config, callbacks=[second])
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


def test_early_stopping_without_a_validation_split_is_refused_with_the_fix_said():
    with pytest.raises(ValueError, match=r"early stopping \(patience 3\) watches the validation split, which is 0"):
        TrainConfig(val_split=0, patience=3).validate()
    TrainConfig(val_split=0, patience=0).validate()
    TrainConfig(val_split=0.1, patience=3).validate()


@pytest.mark.parametrize("images, batch_size, every", [(500, 128, 1), (2000, 64, 1), (60_000, 128, 10)])
def test_every_run_reports_enough_steps_to_draw_a_curve(images, batch_size, every):
    """500 images for one epoch are 4 batches: every 10th reported, that was one point and a chart with no line."""
    steps = math.ceil(images * 0.9 / batch_size)
    assert training.report_every(10, steps) == every
    assert math.ceil(steps / every) >= min(steps, training.MIN_CURVE_POINTS)


def test_a_run_of_four_batches_reports_each_of_them():
    recorder = Recorder()
    train(TrainConfig(arch="mlp", width=0.25, epochs=1, limit=500, batch_size=128, log_every=10),
          callbacks=[recorder])
    assert [e.step for e in recorder.steps] == [1, 2, 3, 4]


def test_auxiliary_outputs_add_weighted_losses():
    labels = torch.tensor([0, 1])
    main, aux1, aux2 = torch.randn(2, 10), torch.randn(2, 10), torch.randn(2, 10)
    plain, logits = outputs_loss(main, labels)
    combined, logits_again = outputs_loss((main, aux1, aux2), labels)
    assert logits_again is main and logits is main
    expected = plain + 0.3 * (outputs_loss(aux1, labels)[0] + outputs_loss(aux2, labels)[0])
    assert combined.item() == pytest.approx(expected.item())


def test_googlenet_trains_its_auxiliary_heads_and_answers_plainly_in_eval():
    config = TrainConfig(arch="googlenet", epochs=1, limit=64, batch_size=32, val_split=0.0, patience=0)
    trainer = Trainer(config)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.fit()
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
    config = TrainConfig(arch="mlp", epochs=1, batch_size=100, limit=300, val_split=0, patience=0,
                         warp=warp, erase=erase)
    Trainer(config).fit()
    assert seen["warp"] == [warp] * 3
    assert seen["erase"] == ([erase] * 3 if erase else [])


def test_an_erase_share_outside_0_to_1_is_refused():
    with pytest.raises(ValueError, match="erase must be in"):
        TrainConfig(erase=1.5).validate()


# --- divergence: stop at once, keep the best finite epoch ---

class RaiseTheRateAfterEpoch1(Callback):
    """What a student's warm restart at a huge learning rate does to a run that was going well."""

    def on_epoch_end(self, trainer, event):
        if event.epoch == 1:
            trainer.schedule.base_lrs = [1e4 for _ in trainer.schedule.base_lrs]


def test_a_run_that_diverges_after_its_first_epoch_keeps_that_epoch():
    config = TrainConfig(arch="lenet5-relu", epochs=3, lr=0.05, optimizer="sgd", schedule="constant",
                         augment=False, limit=2000, batch_size=50, log_every=5)
    trainer = Trainer(config, callbacks=[RaiseTheRateAfterEpoch1()])
    result = trainer.fit()
    assert result.status == "diverged" and result.best_epoch == 1
    assert len(result.history) == 1  # the ruined epoch is not reported as an epoch
    assert re.match(r"training diverged at epoch 2, step \d+: the training loss became .*Lower the learning rate "
                    r"\(it was 0.05; try 0.005 or less\)\. The weights of epoch 1, .* were kept\.", result.divergence)
    assert result.summary()["status"] == "diverged" and result.summary()["divergence"] == result.divergence
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert evaluate(result.model, trainer.val_split, "mnist").loss == pytest.approx(result.history[0].val_loss,
                                                                                    rel=1e-4)
    assert result.test_accuracy > 40  # one short epoch's worth; the ruined weights of epoch 2 answer at chance


def test_an_exploding_but_finite_loss_in_the_first_epoch_is_divergence():
    # MLP at lr 1 with AdamW: the loss climbs to 81, then 8975, then falls back to chance (2.3): no epoch is worth
    # keeping, and the run stops at the first logging interval instead of training on at chance
    config = replace(recipe("mlp"), lr=1.0, epochs=2, limit=1000, log_every=10)
    with pytest.raises(Diverged) as error:
        train(config)
    match = re.fullmatch(r"training diverged at epoch 1, step \d+: the training loss became (\S+) \(guessing gives "
                         r"2\.30\)\. Lower the learning rate \(it was 1; try 0\.1 or less\)\.", str(error.value))
    assert match, str(error.value)
    assert 23 < float(match.group(1)) < math.inf


def test_an_epoch_whose_validation_loss_is_not_finite_is_never_the_best(monkeypatch):
    calls = []

    def nan_at_epoch_2(model, split, dataset, **options):
        calls.append(len(split))
        real = evaluate(model, split, dataset, **options)
        # as if the weights answered inf on one image: argmax is still mostly right, the loss is not finite
        return Evaluation(math.nan, 100.0, real.predictions) if len(calls) == 2 else real

    monkeypatch.setattr(training, "evaluate", nan_at_epoch_2)
    config = TrainConfig(arch="lenet5-relu", epochs=3, augment=False, limit=500, batch_size=50, val_split=0.2)
    result = Trainer(config).fit()
    assert result.status == "diverged" and result.best_epoch == 1 and len(result.history) == 1
    assert "at epoch 2: the validation loss became nan" in result.divergence
    assert math.isfinite(result.test.loss)


# --- memory: refused before the run, and explained when it runs out ---

def test_a_run_too_big_for_the_free_memory_is_refused_before_it_starts(monkeypatch):
    free = 2 * 2**30
    monkeypatch.setattr(training, "available_memory", lambda device: free)
    config = TrainConfig(arch="vgg19", width=4, batch_size=8192, limit=1000)
    with pytest.raises(TrainingError) as error:
        Trainer(config)
    message = str(error.value)
    match = re.fullmatch(r"VGG-19 at width 4 with batch size 8192 needs about (\d+\.\d) GiB of memory, and CPU, "
                         r"\d+ threads? has 2\.0 GiB free: lower the batch size to (\d+) or less, or lower the width "
                         r"\(it is 4\)\.", message)
    assert match, message
    assert float(match.group(1)) > 10  # activations of 8192 images at 4 times the channels
    suggested = int(match.group(2))
    assert estimate_memory(replace(config, batch_size=suggested)).total <= free
    assert estimate_memory(replace(config, batch_size=2 * suggested)).total > free


def test_a_run_whose_model_alone_is_too_big_is_told_to_lower_the_width(monkeypatch):
    monkeypatch.setattr(training, "available_memory", lambda device: 200 * 2**20)
    with pytest.raises(TrainingError, match=r"even a batch of one image does not fit: lower the width \(it is 4\)\.$"):
        Trainer(TrainConfig(arch="vgg19", width=4, batch_size=1, limit=1000))


@pytest.mark.parametrize("dataset", list(data.DATASETS))
def test_every_recipe_fits_in_two_gib(dataset):
    """The recipes must never be refused: every one needs well under what any lab machine has free."""
    full_split = 60_000 * (28 * 28 + 8)
    for arch in list_models():
        assert estimate_memory(recipe(arch, dataset), data_bytes=full_split).total < 2 * 2**30, arch


@pytest.mark.parametrize("where, error", [
    ("augment", RuntimeError("[enforce fail at alloc_cpu.cpp:119] data. DefaultCPUAllocator: can't allocate memory: "
                             "you tried to allocate 9663676416 bytes. Error code 12 (Cannot allocate memory)")),
    ("augment", torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")),
    ("evaluate", MemoryError()),
])
def test_running_out_of_memory_anywhere_in_a_run_says_what_to_lower(monkeypatch, where, error):
    def out_of_memory(*args, **options):
        raise error

    monkeypatch.setattr(data if where == "augment" else training, where, out_of_memory)
    config = TrainConfig(arch="lenet5", epochs=1, limit=200, batch_size=100, val_split=0, patience=0)
    with pytest.raises(TrainingError, match=r"out of memory on CPU, \d+ threads? with LeNet-5 at width 1 and batch "
                                            r"size 100 \(.+\): lower the batch size to 32 or less, or lower the width "
                                            r"\(it is 1\)\."):
        Trainer(config).fit()


def test_one_clock_for_the_pages_and_the_command_line():
    assert [training.clock(s) for s in (None, 0, 5, 65, 3599, 3600, 3723.9)] == [
        "0:00", "0:00", "0:05", "1:05", "59:59", "1:00:00", "1:02:03"]
