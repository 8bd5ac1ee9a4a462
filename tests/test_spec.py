"""A network as data: specs are checked layer by layer with messages that name the layer, and the templates build
exactly the zoo's networks."""

from __future__ import annotations

import json

import pytest
import torch

from core import i18n, spec
from core.cost import count_macs, count_params, layer_summary
from core.models import get_model, list_models
from core.training import outputs_loss


def refusal(document) -> str:
    with pytest.raises(spec.SpecError) as caught:
        spec.check(spec.parse(document))
    return str(caught.value)


def network(*layers: dict) -> dict:
    return {"version": 1, "name": "test", "layers": list(layers)}


@pytest.mark.parametrize("name", [n for n in spec.TEMPLATES if n != "empty"])
def test_a_template_builds_the_zoo_network_with_its_parameters_and_its_answers(name):
    zoo, built = get_model(name), spec.build(spec.parse(spec.TEMPLATES[name]))
    assert count_params(built) == count_params(zoo) and count_macs(built) == count_macs(zoo)
    zoo_weights_in(built, zoo)  # the same weights give the same scores
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    zoo.eval(), built.eval()
    with torch.no_grad():
        torch.testing.assert_close(built(x), zoo(x))


def test_every_zoo_architecture_is_a_template():
    assert set(list_models()) <= set(spec.TEMPLATES)


def zoo_weights_in(model: torch.nn.Module, zoo: torch.nn.Module) -> None:
    """Load the zoo network's weights into ``model``, in the order both hold them."""
    state = model.state_dict()
    assert [t.shape for t in zoo.state_dict().values()] == [t.shape for t in state.values()]
    model.load_state_dict(dict(zip(state, zoo.state_dict().values(), strict=True)))


def test_googlenets_template_trains_as_the_zoos_heads_and_all():
    """In training the auxiliary heads hear the same features and add the same loss; in evaluation they are silent."""
    zoo, built = get_model("googlenet"), spec.build(spec.parse(spec.TEMPLATES["googlenet"]))
    zoo_weights_in(built, zoo)
    x, labels = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.arange(8)
    losses = []
    for model in (zoo, built):
        model.train()
        torch.manual_seed(1)  # the same dropout masks, drawn in the same order
        outputs = model(x)
        assert isinstance(outputs, tuple) and len(outputs) == 3
        losses.append(outputs_loss(outputs, labels)[0])
    torch.testing.assert_close(losses[1], losses[0])
    built.eval()
    assert built(x).shape == (8, 10)


def test_an_auxiliary_head_passes_the_maps_on_and_costs_parameters_but_no_inference():
    stack = spec.parse(network(
        {"type": "conv", "channels": 8, "kernel": 3, "padding": 1}, {"type": "aux", "channels": 4, "units": 16},
        {"type": "relu"}, {"type": "gap"}, {"type": "linear", "units": 10}))
    conv, head, *_ = spec.layer_costs(stack)
    assert head.output_shape == conv.output_shape == (8, 28, 28)
    assert head.params == (8 * 4 + 4 * 2) + (16 * 16 + 16) + (16 * 10 + 10) and head.macs == 0
    net = spec.build(stack)
    assert len(net.features) == 2 and len(net.aux) == 1 and net.taps == (0,)
    assert net.train()(torch.zeros(2, 1, 28, 28))[1].shape == (2, 10)
    assert "needs feature maps" in refusal(network({"type": "flatten"}, {"type": "aux"},
                                                      {"type": "linear", "units": 10}))


def test_a_spec_reads_back_as_it_was_written():
    lenet = spec.parse(spec.TEMPLATES["lenet5-relu"])
    assert spec.parse(lenet.dumps()) == lenet and spec.parse(json.dumps(lenet.as_json())) == lenet
    assert lenet.as_json()["layers"][0] == {"type": "conv", "channels": 6, "kernel": 5, "padding": 2}


def test_the_built_network_has_the_zoos_shape_and_every_layers_cost():
    net = spec.build(spec.parse(network(
        {"type": "conv", "channels": 8, "kernel": 3, "padding": 1}, {"type": "batchnorm"}, {"type": "relu"},
        {"type": "residual", "channels": 16, "stride": 2}, {"type": "gap"}, {"type": "linear", "units": 10})))
    assert len(net.features) == 4 and len(net.classifier) == 2  # split at the global pooling
    rows = {row.name: row for row in layer_summary(net, depth=2)}
    assert rows["features.3"].output_shape == (16, 14, 14) and rows["classifier.1"].output_shape == (10,)
    assert rows["features.0"].params == 8 * 9 + 8 and rows["features.0"].macs == 8 * 9 * 28 * 28
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_a_layer_that_cannot_take_its_input_is_named_with_the_problem():
    stack = network({"type": "conv", "channels": 6, "kernel": 5}, {"type": "maxpool", "kernel": 2},
                    {"type": "conv", "channels": 16, "kernel": 8}, {"type": "conv", "channels": 32, "kernel": 7},
                    {"type": "flatten"}, {"type": "linear", "units": 10})
    assert refusal(stack) == "layer 4, conv: kernel 7 is larger than its 5x5 input"
    assert refusal(network({"type": "flatten"}, {"type": "conv", "channels": 4, "kernel": 3})).startswith(
        "layer 2, conv: it needs feature maps, but its input is 784 flat units")
    assert refusal(network({"type": "linear", "units": 10})).startswith(
        "layer 1, linear: a linear layer needs flat units, but its input is 1 x 28 x 28")
    assert refusal(network({"type": "conv", "channels": 6, "kernel": 3, "groups": 4}, {"type": "gap"},
                           {"type": "linear", "units": 10})).startswith("layer 1, conv: groups 4 must divide")


def test_a_network_must_end_in_one_score_per_class():
    assert refusal(network({"type": "flatten"}, {"type": "linear", "units": 7})) == (
        "the network ends in 7, but it must end in 10 scores, one per class (a linear layer of 10 units)")
    assert refusal(network({"type": "conv", "channels": 10, "kernel": 3})).startswith(
        "the network ends in 10 x 26 x 26")


@pytest.mark.parametrize("document, said", [
    ("{not json", "the file is not JSON"),
    ({"version": 1}, 'a network spec is a JSON object with a list of "layers"'),
    ({"version": 2, "layers": [{"type": "flatten"}]}, "spec version 2 comes from a newer lab; this one reads "
                                                      "version 1: update the lab"),
    ({"layers": [{"type": "flatten"}]}, "spec version None is not one this lab reads"),
    (network(), "the network has no layers"),
    (network(*[{"type": "relu"}] * 200), "the network has 200 layers; at most 100 are allowed"),
    (network({"type": "convolution"}), "layer 1, convolution: unknown layer type; the types are conv, maxpool"),
    (network({"type": "conv", "channels": 6, "kernel": 5, "size": 3}), "layer 1, conv: unknown setting size"),
    (network({"type": "conv", "kernel": 5}), "layer 1, conv: the setting channels is missing"),
    (network({"type": "conv", "channels": 6.5, "kernel": 5}), "layer 1, conv: channels must be a whole number"),
    (network({"type": "conv", "channels": 0, "kernel": 5}), "layer 1, conv: channels 0 is outside 1 to 2048"),
    (network({"type": "dropout", "p": 1.5}), "layer 1, dropout: the dropout share p must be at least 0 and "
                                             "below 1, got 1.5"),
])
def test_a_bad_spec_is_refused_with_a_clear_message(document, said):
    assert refusal(document).startswith(said)


def test_a_refusal_is_said_in_chinese_too():
    with pytest.raises(spec.SpecError) as caught:
        spec.check(spec.parse(network({"type": "flatten"}, {"type": "linear", "units": 7})))
    assert i18n.in_language(caught.value, "zh").startswith("网络的输出是 7，但必须是 10 个得分")


def test_a_network_over_the_classroom_budget_is_told_by_how_much():
    wide = spec.build(spec.parse(network({"type": "flatten"}, {"type": "linear", "units": 8000},
                                         {"type": "linear", "units": 10})))
    params = count_params(wide)
    assert params == 784 * 8000 + 8000 + 8000 * 10 + 10
    assert spec.over_budget(params, count_macs(wide)) == (
        f"{params:,} parameters is {params - 5_000_000:,} over the classroom budget of 5,000,000")
    assert spec.over_budget(61_706, 416_520) is None


THREE_LAYERS = network({"type": "conv", "channels": 8, "kernel": 3, "padding": 1}, {"type": "relu"},
                       {"type": "maxpool", "kernel": 2}, {"type": "flatten"}, {"type": "linear", "units": 10})


def test_a_registered_network_is_an_architecture_for_every_process():
    import subprocess
    import sys

    from core.models import get_card, is_known, list_models

    name = spec.register(spec.parse(THREE_LAYERS))
    assert name.startswith("spec-") and name not in list_models() and is_known(name)
    assert get_card(name).title == "test" and count_params(get_model(name)) == 8 * 9 + 8 + 8 * 14 * 14 * 10 + 10
    assert spec.register(spec.parse(json.dumps(THREE_LAYERS))) == name  # one network, one name
    # A worker process (or the server after a restart) knows it from the spec kept with the runs.
    said = subprocess.run([sys.executable, "-c", f"from core.models import get_card; print(get_card({name!r}).title)"],
                          capture_output=True, text=True, check=True)
    assert said.stdout.strip() == "test"
    assert not is_known("spec-000000000000")  # no such network kept here


def test_a_spec_file_changed_by_hand_is_not_the_network_its_name_says():
    from core.models import is_known

    name = spec.architecture(spec.parse(network({"type": "flatten"}, {"type": "linear", "units": 10})))
    spec.specs_dir().mkdir(parents=True, exist_ok=True)
    (spec.specs_dir() / f"{name}.json").write_text(json.dumps(THREE_LAYERS))
    assert not is_known(name)


def test_the_command_line_trains_a_spec_file_and_every_page_finds_the_run(tmp_path, capsys):
    from core import checkpoints
    from core.__main__ import main

    path = tmp_path / "mynet.json"
    path.write_text(json.dumps({**THREE_LAYERS, "name": "three layers"}))
    assert main(["train", "--spec", str(path), "--epochs", "1", "--limit", "500", "--patience", "0"]) == 0
    assert "saved" in capsys.readouterr().out
    [record] = [r for r in checkpoints.find_models("mnist") if r.name == "three layers"]
    assert record.arch.startswith("spec-")
    assert checkpoints.load_record(record)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    (tmp_path / "future.json").write_text(json.dumps({**THREE_LAYERS, "version": 9}))
    assert main(["train", "--spec", str(tmp_path / "future.json")]) == 2
    assert "spec version 9 comes from a newer lab" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["--arch", "--spec"])
def test_an_exported_script_trains_on_its_own_with_our_network(source, tmp_path, capsys):
    """The file runs in a plain Python with no import of this lab, on the shared data: its loss falls, and its
    network has our parameter count."""
    import os
    import re
    import subprocess
    import sys

    from core.__main__ import main

    (tmp_path / "mynet.json").write_text(json.dumps(THREE_LAYERS))
    which = "lenet5-relu" if source == "--arch" else str(tmp_path / "mynet.json")
    out = tmp_path / "home" / "mynet.py"
    out.parent.mkdir()
    assert main(["export", source, which, "--out", str(out)]) == 0
    capsys.readouterr()
    assert "import core" not in out.read_text() and "from core" not in out.read_text()
    run = subprocess.run([sys.executable, str(out), "--data", os.environ["MNIST_LAB_DATA"], "--epochs", "1",
                          "--limit", "3000", "--batch-size", "64", "--log-every", "5", "--workers", "0"],
                         cwd=out.parent, capture_output=True, text=True, timeout=600,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert run.returncode == 0, run.stderr
    ours = get_model("lenet5-relu") if source == "--arch" else spec.build(spec.parse(THREE_LAYERS))
    assert f"parameters: {count_params(ours):,}" in run.stdout
    losses = [float(x) for x in re.findall(r"step \d+: loss ([\d.]+)", run.stdout)]
    assert len(losses) >= 8 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3  # it learns
    assert re.search(r"epoch 1/1: train loss [\d.]+, test accuracy [\d.]+%", run.stdout)


@pytest.mark.parametrize("arch", list_models())
def test_every_architectures_script_defines_the_zoos_network(arch, tmp_path):
    """Imported from the exported file, ``Net`` holds the zoo's weights and answers as the zoo does: in
    evaluation, and in training with its loss (GoogLeNet's auxiliary heads included)."""
    import importlib.util

    from core import export
    from core.recipes import recipe

    path = tmp_path / f"{arch}.py"
    path.write_text(export.script(recipe(arch), file=path.name))
    loader = importlib.util.spec_from_file_location(f"exported_{arch.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    zoo, exported = get_model(arch), module.Net()
    zoo_weights_in(exported, zoo)
    x, labels = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.arange(4)
    zoo.eval(), exported.eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(x), zoo(x))
    zoo.train(), exported.train()
    losses = []
    for model, loss in ((zoo, lambda out: outputs_loss(out, labels, recipe(arch).label_smoothing)[0]),
                        (exported, lambda out: module.train_loss(out, labels))):
        torch.manual_seed(1)
        losses.append(loss(model(x)))
    torch.testing.assert_close(losses[1], losses[0])


def test_the_command_line_refuses_a_spec_over_the_budget_before_it_trains(tmp_path, capsys):
    from core.__main__ import main

    path = tmp_path / "wide.json"
    path.write_text(json.dumps(network({"type": "flatten"}, {"type": "linear", "units": 8000},
                                       {"type": "linear", "units": 10})))
    assert main(["train", "--spec", str(path)]) == 2
    assert "over the classroom budget of 5,000,000" in capsys.readouterr().err
