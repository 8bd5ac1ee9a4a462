"""The Compare page headless: the table of every model, the pictures, one model's mistakes, its layers."""

from __future__ import annotations

import json
import re
import urllib.error
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import checkpoints, cost, data, metrics, zoo

REPO = Path(__file__).resolve().parent.parent
PAGE = "app_pages/3_Compare.py"
MISTAKE = re.compile(r"^(\S+)\u00a0→ (\S+) \((\d+)%\)$")  # "4 → 9 (87%)", the arrow kept with the true class


@pytest.fixture(scope="module")
def cheap_models() -> list[str]:
    """The two cheapest shipped MNIST models, with this machine's speed figures timed quickly.

    The page times what is missing from the cache and predicts the test set for the models it is
    shown: filling the cache with few repeats, and showing two small models, keeps the tests short.
    """
    records = checkpoints.find_models("mnist", include_runs=False)
    if len(records) < 2:
        pytest.skip(f"needs 2 shipped MNIST models, found {len(records)}")
    zoo.zoo_table(repeats=1)
    return [r.name for r in sorted(records, key=lambda r: cost.architecture_size(r.arch)[1])[:2]]


def open_compare(models: list[str]) -> AppTest:
    at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=180)
    at.switch_page(PAGE)
    at.session_state["compare_models_mnist"] = models
    return at.run()


def charts(at: AppTest) -> dict[str, dict]:
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return {spec["layout"]["title"]["text"]: spec for spec in specs}


def gallery(at: AppTest) -> list[str]:
    """The captions of the chosen model's mistakes."""
    for element in at.get("image"):
        captions = [image.caption for image in element.proto.imgs]
        if captions and all(MISTAKE.match(caption) for caption in captions):
            return captions
    return []


def test_the_table_has_a_row_per_model_and_the_pictures_render(cheap_models):
    at = open_compare(cheap_models)
    assert not at.exception
    # the sidebar's dataset: the shipped models and their own runs
    records = [r for r in checkpoints.find_models("mnist") if r.seen_by(at.session_state["session_id"])]
    table, speeds, report = (frame.value for frame in at.dataframe[:3])
    assert list(table["model"]) == [r.name for r in records]
    assert {r.name for r in records if r.shipped} <= set(table["model"])
    assert list(table["parameters"]) == [cost.architecture_size(r.arch)[0] for r in records]
    assert list(table.columns) == ["model", "architecture", "shipped", "parameters", "MACs", "test acc. %", "epochs",
                                   "training s", "trained on"]  # what fits 1280 pixels; the speeds have a table
    assert list(speeds["model"]) == list(table["model"])
    assert (speeds["CPU ms"] > 0).all() and (speeds["CPU img/s"] > 0).all()
    assert len(report) == len(zoo.LAB_REPORT)
    assert at.get("download_button")

    figures = charts(at)
    mnist = [r for r in records if r.dataset == "mnist"]
    bubbles = figures["Accuracy against MACs (bubble: parameters)"]["data"][0]
    assert bubbles["y"] == [r.test_accuracy for r in mnist]
    assert len(figures["Accuracy against training time"]["data"][0]["x"]) == len(mnist)
    assert figures["validation accuracy %"]["data"]  # the shipped models' curves
    heatmap = figures["Accuracy per class (%)"]["data"][0]
    assert heatmap["y"] == cheap_models and len(heatmap["z"][0]) == 10
    assert all(90 <= value <= 100 for row in heatmap["z"] for value in row)
    confusion = figures["Confusion matrix (test set)"]["data"][0]["z"]
    assert sum(map(sum, confusion)) == 10_000
    hardest = [e for e in at.get("image") if re.match(r"^\S+\u00a0→ \S+ \(\d/2\)$", e.proto.imgs[0].caption)]
    assert hardest and all(c.caption.endswith("(2/2)") for c in hardest[0].proto.imgs[:1])


def test_the_gallery_shows_the_chosen_models_mistakes_by_class(cheap_models, mnist_test):
    at = open_compare(cheap_models)
    [model] = [s for s in at.selectbox if s.label == "Model"]
    assert model.value == cheap_models[0]
    record = next(r for r in checkpoints.find_models("mnist") if r.name == cheap_models[0])
    answers = metrics.model_predictions(record)
    wrong = int((answers.predicted != mnist_test.labels).sum())
    captions = gallery(at)
    assert len(captions) == min(wrong, 20)
    assert any(f"{wrong:,} mistakes of 10,000" in c.value for c in at.caption)
    confidences = [int(MISTAKE.match(c).group(3)) for c in captions]
    assert confidences == sorted(confidences, reverse=True)

    [true_class] = [s for s in at.selectbox if s.label == "True class"]
    assert true_class.options[true_class.index] == "any"  # shown as "any", not as "Choose an option"
    at = true_class.select_index(1 + 4).run()  # the options are "any", then the classes
    assert not at.exception
    captions = gallery(at)
    assert captions and all(MISTAKE.match(c).group(1) == "4" for c in captions)
    [answer] = [s for s in at.selectbox if s.label == "Its answer"]
    at = answer.select_index(1 + 4).run()  # a 4 taken for a 4 is no mistake
    assert not gallery(at) and any("No mistakes" in i.value for i in at.info)


def test_the_layer_summary_adds_up(cheap_models):
    at = open_compare(cheap_models)
    [arch] = [s for s in at.selectbox if s.label == "Architecture"]
    at = arch.select("resnet18").run()
    assert not at.exception
    layers = at.dataframe[-1].value
    params, macs = cost.architecture_size("resnet18")
    assert list(layers["layer"][:2]) == ["features.0", "features.1"]  # depth 2: the stages
    assert layers["parameters"].sum() == params and layers["MACs"].sum() == macs
    [depth] = [s for s in at.slider if s.label == "Depth"]
    at = depth.set_value(1).run()
    assert list(at.dataframe[-1].value["layer"]) == ["features", "classifier"]


def test_without_the_dataset_the_page_says_so_and_shows_what_needs_no_data(cheap_models, tmp_path, monkeypatch):
    """Offline at first start: the table, the pictures and the layers come from the manifest and the code."""
    from torchvision import datasets

    def offline(self):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    data._read.cache_clear()  # loads are cached by folder; start from what the disk holds
    at = open_compare(cheap_models)
    assert not at.exception
    [warning] = [w.value for w in at.warning if "test images cannot be read" in w.value]
    assert f"MNIST was not found in {tmp_path.resolve()}" in warning and data.DATA_ENV in warning

    records = [r for r in checkpoints.find_models("mnist") if r.seen_by(at.session_state["session_id"])]
    assert list(at.dataframe[0].value["model"]) == [r.name for r in records]
    assert list(at.dataframe[0].value["parameters"]) == [cost.architecture_size(r.arch)[0] for r in records]
    figures = charts(at)
    assert "Accuracy against MACs (bubble: parameters)" in figures and "Accuracy per class (%)" not in figures
    assert not gallery(at) and not [s for s in at.selectbox if s.label == "Model"]
    layers = at.dataframe[-1].value
    [arch] = [s for s in at.selectbox if s.label == "Architecture"]
    params, macs = cost.architecture_size(arch.value)
    assert layers["parameters"].sum() == params and layers["MACs"].sum() == macs


def test_untimed_models_are_timed_by_a_queued_job_not_by_the_page(cheap_models, monkeypatch):
    import ui

    monkeypatch.setattr(zoo, "_read_speeds", lambda: {})  # as on a machine that never timed the zoo
    at = open_compare(cheap_models)
    assert not at.exception
    [job] = [j for j in ui.job_manager().snapshots() if j.kind == "timing"]
    assert not job.config.refresh and len(job.config.architectures) >= 2  # every model's, each once
    ui.job_manager().stop(job.id, owner=job.owner)  # the other tests need the slot
    assert not ui.job_manager().wait(job.id, timeout=60).active
    at.run()
    # the table is there without its speed columns; one job is enough: a second visit queues no other
    assert at.dataframe and [j.id for j in ui.job_manager().snapshots() if j.kind == "timing"] == [job.id]
    assert any(b.label.startswith("Time the") and b.label.endswith("untimed models") for b in at.button)


def test_labels_of_points_close_together_go_where_they_cover_no_other_label():
    import ui

    # zfnet, mobilenet and vgg11 on the chart of accuracy against training time, at 1280 pixels wide: three points
    # 15 pixels apart on one line, their labels all put above them once
    x, y, names = [230, 245, 262, 120], [70, 70, 70, 200], ["zfnet", "mobilenet", "vgg11", "lenet5"]
    places = ui.label_places(x, y, names, [8] * 4, width=330, height=280)
    boxes = [ui.label_box(px, py, 8, name, place) for px, py, name, place in zip(x, y, names, places, strict=True)]
    for i, a in enumerate(boxes):
        assert 0 <= a[0] and a[2] <= 330 and 0 <= a[1] and a[3] <= 280  # inside the plot
        for b in boxes[i + 1:]:
            assert ui._overlap(a, b) == 0, (names, places)
    assert len(set(places[:3])) == 3
