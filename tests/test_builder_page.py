"""The Train page's builder headless: a template's layers and cost, a bad stack said in place, a network over the
budget refused with by how much, and a built network trained, saved and loaded back."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

import builder
import ui
from core import checkpoints, spec
from core.cost import count_params
from core.models import get_model

REPO = Path(__file__).resolve().parent.parent
TRAIN = "app_pages/1_Train.py"
THREE_LAYERS = spec.parse({"version": 1, "name": "three layers", "layers": [
    {"type": "conv", "channels": 8, "kernel": 3, "padding": 1}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
    {"type": "flatten"}, {"type": "linear", "units": 10}]})


def open_builder(rows: list[dict] | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=300)
    at.switch_page(TRAIN)
    at.session_state[ui.KEPT + "arch"] = "build"
    if rows is not None:
        at.session_state[builder.ROWS] = rows
        at.session_state[builder.VERSION] = 1
    at.run()
    assert not at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    [value] = [m.value for m in at.metric if m.label == label]
    return value


def start_button(at: AppTest):
    [button] = [b for b in at.button if b.label == "Start training"]
    return button


def test_the_builder_starts_from_a_template_with_every_layers_shape_and_cost():
    at = open_builder()
    assert metric(at, "Parameters") == f"{count_params(get_model('lenet5-relu')):,}"  # the first template shown
    [template] = [s for s in at.selectbox if s.label == "Template"]
    template.select("mlp").run()
    [button] = [b for b in at.button if b.label == "Start from this template"]
    button.click().run()
    assert not at.exception and not at.error
    assert metric(at, "Parameters") == f"{count_params(get_model('mlp')):,}"
    [costs] = [d.value for d in at.dataframe if "output shape" in d.value.columns]
    assert list(costs["output shape"]) == ["784", "1024", "1024", "1024", "512", "512", "512", "10"]
    assert not start_button(at).disabled
    [template] = [s for s in at.selectbox if s.label == "Template"]
    template.select("googlenet").run()  # inception modules and auxiliary heads
    [button] = [b for b in at.button if b.label == "Start from this template"]
    button.click().run()
    assert not at.exception and not at.error
    assert metric(at, "Parameters") == f"{count_params(get_model('googlenet')):,}"
    [costs] = [d.value for d in at.dataframe if "output shape" in d.value.columns]
    heads = costs[costs["type"] == "aux"]
    assert list(heads["output shape"]) == ["128 x 7 x 7", "132 x 7 x 7"] and list(heads["MACs"]) == [0, 0]


def test_layers_are_inserted_where_the_student_says_with_settings_to_edit():
    at = open_builder(spec.rows(spec.parse(spec.TEMPLATES["empty"])))  # flatten, linear 10
    for kind in ("conv", "relu", "maxpool"):
        [new] = [s for s in at.selectbox if s.label == "Add a layer"]
        new.select(kind).run()
        [where] = [n for n in at.number_input if n.label == "at position"]
        assert where.value == len(at.session_state[builder.ROWS]) - 1  # just before the flatten
        [insert] = [b for b in at.button if b.label == "Insert"]
        insert.click().run()
        assert not at.exception and not at.error
    assert spec.from_rows(at.session_state[builder.ROWS], "three layers") == THREE_LAYERS
    assert metric(at, "Parameters") == f"{count_params(spec.build(THREE_LAYERS)):,}"
    [where] = [n for n in at.number_input if n.label == "at position"]
    where.set_value(1).run()
    [insert] = [b for b in at.button if b.label == "Insert"]
    insert.click().run()  # a fourth max pooling, first: 14x14 maps from then on
    assert [row["type"] for row in at.session_state[builder.ROWS]][:2] == ["maxpool", "conv"]


def test_a_bad_stack_is_said_in_place_and_cannot_be_trained():
    rows = spec.rows(spec.parse({"version": 1, "name": "bad", "layers": [
        {"type": "conv", "channels": 6, "kernel": 5}, {"type": "maxpool", "kernel": 2},
        {"type": "conv", "channels": 16, "kernel": 8}, {"type": "conv", "channels": 32, "kernel": 3},
        {"type": "flatten"}, {"type": "linear", "units": 10}]}))
    rows[3]["kernel"] = 7  # as a student types it into the table
    at = open_builder(rows)
    assert [e.value for e in at.error] == ["layer 4, conv: kernel 7 is larger than its 5x5 input"]
    assert start_button(at).disabled


def test_a_network_over_the_budget_is_refused_with_by_how_much():
    wide = spec.parse({"version": 1, "name": "wide", "layers": [
        {"type": "flatten"}, {"type": "linear", "units": 8000}, {"type": "linear", "units": 10}]})
    at = open_builder(spec.rows(wide))
    params = count_params(spec.build(wide))
    assert [e.value for e in at.error] == [
        f"{params:,} parameters is {params - 5_000_000:,} over the classroom budget of 5,000,000"]
    assert start_button(at).disabled


def test_a_built_network_trains_is_saved_under_its_run_name_and_loads_back_into_the_builder():
    from test_app import caption_has, run_until, start

    at = open_builder(spec.rows(THREE_LAYERS))
    [name] = [t for t in at.text_input if t.label == "Network name"]
    name.input("three layers").run()
    at = start(at, arch="build", epochs=1, images=500, name="my first network")
    at = run_until(at, lambda at: caption_has(at, "done · saved"))
    [record] = [r for r in checkpoints.find_models("mnist") if r.name == "my first network"]
    assert spec.stored_spec(record.arch) == THREE_LAYERS
    at.session_state[builder.ROWS] = spec.rows(spec.parse(spec.TEMPLATES["empty"]))  # the student starts over
    at.run()
    [saved] = [s for s in at.selectbox if s.label == "Or one of your saved networks"]
    saved.select(record).run()
    [load] = [b for b in at.button if b.label == "Load it into the builder"]
    load.click().run()
    assert not at.exception and at.session_state[builder.ROWS] == spec.rows(THREE_LAYERS)


def test_the_inside_page_looks_into_a_built_network_even_one_with_no_stage(capsys):
    from core.__main__ import main

    flat = spec.parse({"version": 1, "name": "flat", "layers": [{"type": "flatten"}, {"type": "linear", "units": 10}]})
    (Path(checkpoints.runs_dir()) / "flat.json").write_text(flat.dumps())
    assert main(["train", "--spec", str(Path(checkpoints.runs_dir()) / "flat.json"), "--epochs", "1", "--limit", "500",
                 "--patience", "0", "--name", "flat network"]) == 0
    capsys.readouterr()
    [record] = [r for r in checkpoints.find_models("mnist") if r.name == "flat network"]
    for view in ("maps", "filters", "saliency", "occlusion", "channel"):
        at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=300)
        at.switch_page("app_pages/4_Inside.py")
        shown = {"inside_model": record.label, "inside_view": view, "inside_index": 0, ui.EVERYONE_KEY: True}
        for key, value in shown.items():  # everyone's runs: one trained from the command line has no student
            at.session_state[key] = value
        at.run()
        assert not at.exception, view
    assert any("no stage before its read-out" in i.value for i in at.info)
