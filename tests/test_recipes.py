"""`train --all`: every architecture with its recipe, saved as it goes, resumable."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from core import checkpoints
from core.models import list_models
from core.recipes import recipe, train_all
from core.training import Callback

TINY = dict(limit=300, epochs=3, batch_size=50)


class StopAfterEpochs(Callback):
    """Asks the run to stop, as Ctrl-C or a stop button would, once it has finished ``epochs`` epochs."""

    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, trainer, event):
        if event.epoch >= self.epochs:
            trainer.should_stop = True


def test_every_architecture_has_a_valid_recipe():
    for arch in list_models():
        config = recipe(arch, "fashion")
        config.validate()
        assert (config.arch, config.dataset) == (arch, "fashion")


def test_fashion_recipes_change_only_what_they_name():
    for arch in list_models():
        mnist, fashion = asdict(recipe(arch, "mnist")), asdict(recipe(arch, "fashion"))
        changed = {k for k in mnist if mnist[k] != fashion[k]} - {"dataset"}
        assert mnist["warp"] and mnist["erase"] == 0  # a mirrored or erased digit can become another digit
        assert changed <= {"epochs", "warp", "erase"}, arch
    assert not recipe("resnet18", "fashion").warp and recipe("resnet18", "fashion").erase > 0


# mlp has dropout: its dropout generator must be restored; lenet5 has convolutions, whose channels-last
# parameters the fused optimizer steps together with their moments, read back from a contiguous file
@pytest.mark.parametrize("arch", ["mlp", "lenet5"])
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, arch):
    [straight] = train_all("mnist", folder=tmp_path / "a", archs=[arch], overrides=TINY)
    assert straight.status == "trained" and straight.resumed_from_epoch == 0

    [stopped] = train_all("mnist", folder=tmp_path / "b", archs=[arch], overrides=TINY,
                          callbacks=lambda arch: [StopAfterEpochs(2)])
    assert stopped.status == "stopped"
    assert (tmp_path / "b" / ".progress" / "mnist" / f"{arch}.safetensors").exists()
    assert checkpoints.read_manifest(tmp_path / "b") == []

    [resumed] = train_all("mnist", folder=tmp_path / "b", archs=[arch], overrides=TINY)
    assert resumed.status == "trained" and resumed.resumed_from_epoch == 2
    assert not (tmp_path / "b" / ".progress" / "mnist" / f"{arch}.safetensors").exists()
    a, b = checkpoints.load_record(straight.record), checkpoints.load_record(resumed.record)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert resumed.record.test_accuracy == straight.record.test_accuracy
    assert len(resumed.record.history) == 3


def test_saved_models_are_skipped_until_the_recipe_changes(tmp_path):
    [first] = train_all("mnist", folder=tmp_path, archs=["lenet5"], overrides=TINY)
    [again] = train_all("mnist", folder=tmp_path, archs=["lenet5"], overrides=TINY)
    assert again.status == "skipped" and again.record == first.record
    [changed] = train_all("mnist", folder=tmp_path, archs=["lenet5"], overrides=dict(TINY, epochs=1))
    assert changed.status == "trained" and changed.record.epochs == 1
    assert [r.name for r in checkpoints.read_manifest(tmp_path)] == ["lenet5"]


def test_a_model_saved_before_a_setting_existed_counts_as_trained_with_its_default(tmp_path):
    # Manifests written before `warp` and `erase` existed lack them; those runs warped and never erased.
    [first] = train_all("mnist", folder=tmp_path, archs=["lenet5"], overrides=TINY)
    manifest = tmp_path / "manifest.json"
    saved = json.loads(manifest.read_text())
    for entry in saved["models"]:
        del entry["config"]["warp"], entry["config"]["erase"]
    manifest.write_text(json.dumps(saved))
    [again] = train_all("mnist", folder=tmp_path, archs=["lenet5"], overrides=TINY)
    assert again.status == "skipped"
    [changed] = train_all("mnist", folder=tmp_path, archs=["lenet5"], overrides=dict(TINY, erase=0.5))
    assert changed.status == "trained" and changed.record.config["erase"] == 0.5


def test_a_damaged_progress_file_starts_the_model_afresh(tmp_path):
    progress = tmp_path / ".progress" / "mnist" / "lenet5.safetensors"
    progress.parent.mkdir(parents=True)
    progress.write_bytes(b"half a file")
    [outcome] = train_all("mnist", folder=tmp_path, archs=["lenet5"], overrides=TINY)
    assert outcome.status == "trained" and outcome.resumed_from_epoch == 0


def test_shipped_accuracy_is_that_of_the_float16_file(tmp_path, mnist_test):
    from core.training import evaluate

    [outcome] = train_all("mnist", folder=tmp_path, archs=["lenet5"], overrides=TINY)
    model = checkpoints.load_record(outcome.record)
    assert evaluate(model, mnist_test, "mnist").accuracy == outcome.record.test_accuracy


def test_a_progress_file_that_fails_half_way_through_loading_leaves_no_trace(tmp_path):
    # An older format: the weights load, then a field is missing. The model must start afresh from
    # its seed, not from the weights that were loaded before the failure.
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    [straight] = train_all("mnist", folder=tmp_path / "a", archs=["mlp"], overrides=TINY)
    [stopped] = train_all("mnist", folder=tmp_path / "b", archs=["mlp"], overrides=TINY,
                          callbacks=lambda arch: [StopAfterEpochs(2)])
    assert stopped.status == "stopped"
    progress = tmp_path / "b" / ".progress" / "mnist" / "mlp.safetensors"
    with safe_open(progress, framework="pt") as f:
        metadata, tensors = f.metadata(), {key: f.get_tensor(key) for key in f.keys()}
    extras = json.loads(metadata["progress"])
    del extras["best_score"]
    save_file(tensors, progress, metadata={**metadata, "progress": json.dumps(extras)})

    [outcome] = train_all("mnist", folder=tmp_path / "b", archs=["mlp"], overrides=TINY)
    assert outcome.status == "trained" and outcome.resumed_from_epoch == 0
    a, b = checkpoints.load_record(straight.record), checkpoints.load_record(outcome.record)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
