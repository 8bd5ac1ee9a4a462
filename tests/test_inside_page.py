"""The Inside page headless: a test image, a drawing from the session, two models side by side."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from core import checkpoints, explain
from core.models import get_model

REPO = Path(__file__).resolve().parent.parent
PAGE = "app_pages/4_Inside.py"
LENET_STAGES = ["1. conv 5x5 · 6 x 28 x 28", "2. conv 5x5 · 16 x 10 x 10", "3. conv 5x5 · 120 x 1 x 1"]


def open_inside(**session) -> AppTest:
    """Start at the entry point and switch to the page, as the browser does, with a prepared session."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.switch_page(PAGE)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception
    return at


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
    assert at.radio[0].value == "A test image"
    assert "Label: 2" in captions(at)
    assert answers(at) == [answers(at)[0]] and answers(at)[0].startswith("**lenet5** answers **2**")
    assert [m.value.strip("*") for m in at.markdown if " · " in m.value] == LENET_STAGES
    assert [t.label for t in at.tabs] == ["Feature maps", "Filters", "Saliency and Grad-CAM", "Occlusion",
                                          "One channel"]

    first = chart(at, "maps_0_1")["data"][0]  # C1: six 28x28 maps in a 2 x 3 mosaic
    assert array(first["z"]).shape == (2 * 28 + 1, 3 * 28 + 2)
    assert "channel" in first["hovertemplate"] and "mean activation" in first["hovertemplate"]
    hover = array(first["customdata"])
    assert set(np.unique(hover[..., 0][~np.isnan(hover[..., 0])])) == set(range(6))
    assert array(chart(at, "filters_0")["data"][0]["z"]).shape == (2 * 5 + 1, 3 * 5 + 2)  # six 5x5 kernels

    occlusion = array(chart(at, "occlusion_0")["data"][-1]["z"])
    ink = mnist_test.images[1].numpy() > 0
    row, col = np.unravel_index(occlusion.argmax(), occlusion.shape)
    assert occlusion.shape == (28, 28) and ink[max(0, row - 3) : row + 4, max(0, col - 3) : col + 4].any()
    assert array(chart(at, "cam_0")["data"][-1]["z"]).shape == (28, 28)
    assert "Grad-CAM on stage 2, conv 5x5 (10 x 10)." in captions(at)

    assert array(chart(at, "pattern_0")["data"][0]["z"]).shape == (28, 28)
    favourites = at.get("image")[0].proto.imgs
    assert len(favourites) == 8 and all(" · " in image.caption for image in favourites)
    for sentence in ("Each small square is one channel", "The first layer's kernels", "Saliency: how much",
                     "ZFNet's experiment", "What excites one channel"):
        assert sentence in captions(at)


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
    assert at.radio[0].value == "Your last drawing"
    assert "Label:" not in captions(at)
    assert answers(at)[0].startswith("**lenet5** answers **7**")
    assert at.selectbox[1].value is None and "each model's own answer" in at.selectbox[1].options[0]
    shown = array(chart(at, "input")["data"][0]["z"])
    assert np.allclose(shown, drawing, atol=0.5 / 255 + 1e-6)  # rounded to 8 bits, as a test image


def test_without_a_drawing_the_page_says_where_to_make_one():
    at = open_inside()
    at.radio[0].set_value("Your last drawing").run()
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
    assert sum(c.proto.id.split("-")[-1].startswith("maps_1_") for c in at.get("plotly_chart")) == stage_count
    if second == "mlp":  # the fully connected baseline: units, not maps, and no Grad-CAM
        assert any("a fully connected network has none" in i.value for i in at.info)
        assert "template as large as the image" in captions(at)
        assert any("1024 units" in m.value for m in at.markdown)
