"""The Inside page headless: a test image, a drawing from the session, two models side by side, and only
the view on screen computed, once for every session."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import streamlit as st
from streamlit.testing.v1 import AppTest

import ui
from core import checkpoints, explain
from core.models import get_model

REPO = Path(__file__).resolve().parent.parent
PAGE = "app_pages/4_Inside.py"
LENET_STAGES = ["1. conv 5x5 · 6 x 28 x 28", "2. conv 5x5 · 16 x 10 x 10", "3. conv 5x5 · 120 x 1 x 1"]
VIEWS = {"Feature maps": "maps", "Filters": "filters", "Saliency and Grad-CAM": "saliency", "Occlusion": "occlusion",
         "One channel": "channel"}  # as the radio shows them, and its values


def open_inside(**session) -> AppTest:
    """Start at the entry point and switch to the page, as the browser does, with a prepared session."""
    at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=120)
    at.switch_page(PAGE)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception
    return at


def show(at: AppTest, view: str) -> AppTest:
    """Put a view on screen, as a click on its name does."""
    [views] = [r for r in at.radio if r.label == "View"]
    views.set_value(VIEWS[view]).run()
    assert not at.exception
    return at


def charts(at: AppTest) -> list[str]:
    return [c.proto.id.split("-")[-1] for c in at.get("plotly_chart")]


def chart(at: AppTest, key: str) -> dict:
    [element] = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    return json.loads(element.proto.spec)


def array(field) -> np.ndarray:
    """A plotly array from a chart's JSON: a list, or plotly's typed form {dtype, bdata, shape}."""
    if isinstance(field, dict):
        shape = [int(n) for n in field["shape"].split(",")]
        return np.frombuffer(base64.b64decode(field["bdata"]), dtype=field["dtype"]).reshape(shape)
    return np.array(field, dtype=float)


def answers(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if " answers " in m.value]


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def test_a_test_image_shows_its_label_the_answer_and_every_view(mnist_test):
    at = open_inside(inside_index=1)  # the second test digit is a 2
    assert at.title[0].value == "Inside"
    assert at.radio[0].value == "test"
    assert "Label: 2" in captions(at)
    assert answers(at) == [answers(at)[0]] and answers(at)[0].startswith("**lenet5** answers **2**")
    [views] = [r for r in at.radio if r.label == "View"]
    assert views.options == list(VIEWS) and views.value == "maps"

    # Feature maps, on screen first: one chart per stage and nothing of the other views.
    assert [m.value.strip("*") for m in at.markdown if " · " in m.value] == LENET_STAGES
    assert charts(at) == ["input", "maps_0_1", "maps_0_2", "maps_0_3"]
    first = chart(at, "maps_0_1")["data"][0]  # C1: six 28x28 maps in a 2 x 3 mosaic
    assert array(first["z"]).shape == (2 * 28 + 1, 3 * 28 + 2)
    assert "channel" in first["hovertemplate"] and "mean activation" in first["hovertemplate"]
    hover = array(first["customdata"])
    assert set(np.unique(hover[..., 0][~np.isnan(hover[..., 0])])) == set(range(6))
    assert "Each small square is one channel" in captions(at)

    show(at, "Filters")
    assert charts(at) == ["input", "filters_0"] and "The first layer's kernels" in captions(at)
    assert array(chart(at, "filters_0")["data"][0]["z"]).shape == (2 * 5 + 1, 3 * 5 + 2)  # six 5x5 kernels

    show(at, "Saliency and Grad-CAM")
    assert charts(at) == ["input", "saliency_0", "cam_0"] and "Saliency: how much" in captions(at)
    assert array(chart(at, "saliency_0")["data"][0]["z"]).shape == (28, 28)
    assert array(chart(at, "cam_0")["data"][-1]["z"]).shape == (28, 28)
    assert "Grad-CAM on stage 2, conv 5x5 (10 x 10)." in captions(at)

    show(at, "Occlusion")
    assert charts(at) == ["input", "occlusion_0"] and "ZFNet's experiment" in captions(at)
    occlusion = array(chart(at, "occlusion_0")["data"][-1]["z"])
    ink = mnist_test.images[1].numpy() > 0
    row, col = np.unravel_index(occlusion.argmax(), occlusion.shape)
    assert occlusion.shape == (28, 28) and ink[max(0, row - 3) : row + 4, max(0, col - 3) : col + 4].any()

    show(at, "One channel")
    assert charts(at) == ["input", "pattern_0"] and "What excites one channel" in captions(at)
    assert array(chart(at, "pattern_0")["data"][0]["z"]).shape == (28, 28)
    favourites = at.get("image")[0].proto.imgs
    assert len(favourites) == 8 and all(" · " in image.caption for image in favourites)
    # Every view keeps the answer line and the time it took.
    assert answers(at)[0].startswith("**lenet5** answers **2**") and "This view in" in captions(at)


def test_only_the_view_on_screen_is_computed_and_once_for_every_session(monkeypatch):
    st.cache_data.clear()  # the server's caches outlive sessions (that is the point): start from none
    calls: dict[str, list[dict]] = {}
    for name in ("saliency_map", "grad_cam", "occlusion", "maximise_channel"):
        real, calls[name] = getattr(explain, name), []

        def spy(*args, real=real, seen=calls[name], **kwargs):
            seen.append(kwargs)
            return real(*args, **kwargs)

        monkeypatch.setattr(explain, name, spy)

    def counts() -> dict[str, int]:
        return {name: len(seen) for name, seen in calls.items()}

    at = open_inside(inside_index=3)
    show(at, "Filters")
    assert counts() == dict(saliency_map=0, grad_cam=0, occlusion=0, maximise_channel=0)
    show(at, "Saliency and Grad-CAM")
    assert counts() == dict(saliency_map=1, grad_cam=1, occlusion=0, maximise_channel=0)
    show(at, "Occlusion")
    assert calls["occlusion"] == [dict(patch=4, stride=2)] and counts()["saliency_map"] == 1
    drops = array(chart(at, "occlusion_0")["data"][-1]["z"])
    at.run()
    assert counts()["occlusion"] == 1

    # A second student on the same model, image and settings gets the first one's result.
    other = open_inside(inside_index=3, inside_view="occlusion")
    assert counts() == dict(saliency_map=1, grad_cam=1, occlusion=1, maximise_channel=0)
    assert np.array_equal(array(chart(other, "occlusion_0")["data"][-1]["z"]), drops)
    show(other, "Saliency and Grad-CAM")
    show(other, "Feature maps")
    assert counts() == dict(saliency_map=1, grad_cam=1, occlusion=1, maximise_channel=0)

    # Other settings are another computation, once.
    [stride] = [s for s in at.slider if s.label == "Occlusion stride (pixels)"]
    stride.set_value(3).run()
    assert not at.exception and calls["occlusion"] == [dict(patch=4, stride=2), dict(patch=4, stride=3)]
    [explained] = [s for s in at.selectbox if s.label == "Explain the class"]
    explained.select(5).run()
    assert counts()["occlusion"] == 3 and "explaining class **5**" in answers(at)[0]
    show(at, "Saliency and Grad-CAM")
    assert counts() == dict(saliency_map=2, grad_cam=2, occlusion=3, maximise_channel=0)


def test_a_views_choices_outlive_a_look_at_another_view():
    at = show(open_inside(inside_index=1), "One channel")
    [stage] = [s for s in at.selectbox if s.label == "Stage"]
    stage.set_value(1).run()  # C3, 16 channels
    [channel] = [n for n in at.number_input if n.label == "Channel"]
    channel.set_value(5).run()
    assert not at.exception
    show(show(at, "Feature maps"), "One channel")
    assert [s.value for s in at.selectbox if s.label == "Stage"] == [1]
    assert [n.value for n in at.number_input if n.label == "Channel"] == [5]


def test_the_random_button_picks_another_test_image(mnist_test):
    at = open_inside()
    [button] = [b for b in at.button if b.label == "Random test image"]
    button.click().run()
    assert not at.exception
    index = int(at.number_input[0].value)
    label = int(mnist_test.labels[index])
    assert f"Label: {label}" in captions(at)


def test_the_last_drawing_is_the_default_input(mnist_test):
    drawing = mnist_test.images[0].numpy().astype(np.float32) / 255  # as the Draw page keeps it: a 7
    at = open_inside(last_digit=drawing)
    assert at.radio[0].value == "drawing"
    assert "Label:" not in captions(at)
    assert answers(at)[0].startswith("**lenet5** answers **7**")
    assert at.selectbox[1].index == 0 and "each model's own answer" in at.selectbox[1].options[0]
    shown = array(chart(at, "input")["data"][0]["z"])
    assert np.allclose(shown, drawing, atol=0.5 / 255 + 1e-6)  # rounded to 8 bits, as a test image


def test_without_a_drawing_the_page_says_where_to_make_one():
    at = open_inside()
    at.radio[0].set_value("drawing").run()
    assert not at.exception
    assert any("draw a digit on the Draw page" in i.value for i in at.info)
    assert not answers(at)


def test_two_models_side_by_side_on_the_same_input():
    records = {r.name: r for r in checkpoints.find_models("mnist")}
    second = "mlp" if "mlp" in records else next(n for n in records if n != "lenet5")
    at = open_inside(inside_index=0)
    at.toggle[0].set_value(True).run()
    [box] = [s for s in at.selectbox if s.label == "Second model"]
    box.select(second).run()
    assert not at.exception
    assert [a.split("**")[1] for a in answers(at)] == ["lenet5", second]
    stage_count = len(explain.find_stages(get_model(records[second].arch)))
    assert sum(key.startswith("maps_1_") for key in charts(at)) == stage_count
    if second == "mlp":  # the fully connected baseline: units, not maps, and no Grad-CAM
        assert any("1024 units" in m.value for m in at.markdown)
        assert "template as large as the image" in captions(show(at, "Filters"))
        show(at, "Saliency and Grad-CAM")
        assert any("a fully connected network has none" in i.value for i in at.info)
        assert {"saliency_0", "cam_0", "saliency_1"} <= set(charts(at)) and "cam_1" not in charts(at)
    show(at, "Occlusion")
    assert [a.split("**")[1] for a in answers(at)] == ["lenet5", second]
    assert charts(at) == ["input", "occlusion_0", "occlusion_1"]


def test_explain_the_class_keeps_the_true_label_as_the_image_and_the_dataset_change(mnist_test):
    at = open_inside(inside_index=0)

    def explained():
        [box] = [s for s in at.selectbox if s.label == "Explain the class"]
        return box.options[box.index] if box.index is not None else None

    assert explained() == "the true label"
    at.number_input[0].set_value(1).run()  # another digit: a 2, where the first was a 7
    assert int(mnist_test.labels[0]) != int(mnist_test.labels[1])
    assert not at.exception and explained() == "the true label"
    at.radio(key=ui.DATASET_KEY).set_value("fashion").run()
    assert not at.exception and explained() == "the true label"
    assert "explaining class **Pullover**" in answers(at)[0]  # Fashion-MNIST's test image 1 is a pullover
