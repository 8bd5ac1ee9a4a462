"""The Generate page headless: the shipped generator's gallery, walks, scores and export, and a live run."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from core import gan
from tests.test_app import caption_has, open_page, run_until


def image_captions(at: AppTest) -> list[str]:
    return [image.caption for element in at.get("image") for image in element.proto.imgs]


def test_the_shipped_generator_fills_every_tab():
    at = open_page("pages/5_Generate.py")
    assert not at.exception
    [generator_box] = [s for s in at.selectbox if s.label == "Generator"]
    assert generator_box.value.shipped and generator_box.value.arch == gan.ARCH
    assert [t.label for t in at.tabs] == ["Gallery", "Latent walks", "Scores", "Train", "Export"]
    assert "50 generated digits of all classes, seed 0. Each column is one class." in image_captions(at)
    assert "0 · 1 · 2 · 3 · 4 · 5 · 6 · 7 · 8 · 9" in image_captions(at)  # style against class

    [class_box] = [s for s in at.selectbox if s.label == "Class" and s.value is None]
    class_box.select(7).run()
    [count] = [s for s in at.select_slider if s.label == "How many"]
    count.set_value(20).run()
    assert not at.exception
    assert "20 generated digits of “7”, seed 0." in image_captions(at)

    labels = [m.label for m in at.metric]
    assert labels == ["Label agreement", "FID (judge's features)", "Classification score"]
    assert float(at.metric[0].value.rstrip(" %")) == round(generator_box.value.scores["agreement"], 2)
    [scores] = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = ["label agreement (%)", "the judge on real images (%)", "diversity (% of real)"]
    assert [trace["name"] for trace in scores["data"]] == names
    assert scores["data"][0]["y"] == generator_box.value.scores["agreement_per_class"]
    assert min(scores["data"][1]["y"]) > 96  # the judge reads real digits of every class

    downloads = [b.proto.label for b in at.get("download_button")]
    assert downloads == ["Download the grid (PNG)", "Download 6,000 digits (CSV)"]
    [fmt] = [r for r in at.radio if r.label == "Format"]
    fmt.set_value("npz").run()
    assert [b.proto.label for b in at.get("download_button")][-1] == "Download 6,000 digits (NPZ)"


def test_a_gan_run_trains_live_and_joins_the_generators():
    at = open_page("pages/5_Generate.py")
    [epochs] = [s for s in at.slider if s.label == "Epochs"]
    epochs.set_value(1)
    [images] = [s for s in at.select_slider if s.label == "Training images"]
    images.set_value(2000)
    [name] = [t for t in at.text_input if t.label == "Run name"]
    name.input("tiny gan")
    [start] = [b for b in at.button if b.label == "Start training"]
    at = start.click().run()
    assert not at.exception
    at = run_until(at, lambda at: caption_has(at, "done · saved"), timeout=300)
    assert any("saved as “tiny gan”" in s.value for s in at.success)
    assert "Fixed noise after epoch 1: each row one z, each column one class." in image_captions(at)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Losses" in titles and "Scores per class" in titles
    at.run()
    [generator_box] = [s for s in at.selectbox if s.label == "Generator"]
    assert any(option.startswith("tiny gan · 1 epoch ·") for option in generator_box.options)
