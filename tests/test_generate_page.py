"""The Generate page headless: the shipped generator's gallery, walks, scores and export, and a live run."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from core import checkpoints, gan
from tests.test_app import caption_has, open_page, run_until


def image_captions(at: AppTest) -> list[str]:
    return [image.caption for element in at.get("image") for image in element.proto.imgs]


def test_the_shipped_generator_fills_every_tab():
    at = open_page("app_pages/5_Generate.py")
    assert not at.exception
    [generator_box] = [s for s in at.selectbox if s.label == "Generator"]
    assert generator_box.value.shipped and generator_box.value.arch == gan.ARCH
    assert [t.label for t in at.tabs] == ["Gallery", "Latent walks", "Scores", "Train", "Export"]
    assert "50 generated digits of all classes, seed 0. Each column is one class." in image_captions(at)
    assert "0 · 1 · 2 · 3 · 4 · 5 · 6 · 7 · 8 · 9" in image_captions(at)  # style against class

    [class_box] = [s for s in at.selectbox if s.label == "Class" and s.options[0] == "all classes"]
    assert class_box.index == 0  # shown as "all classes", not as "Choose an option"
    class_box.select(7).run()
    [count] = [s for s in at.select_slider if s.label == "How many"]
    count.set_value(20).run()
    assert not at.exception
    assert "20 generated digits of “7”, seed 0." in image_captions(at)

    labels = [m.label for m in at.metric]
    assert labels == ["Label agreement", "FID (judge's features)", "Classification score"]
    assert float(at.metric[0].value.rstrip(" %")) == round(generator_box.value.metrics["agreement"], 2)
    [scores] = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = ["label agreement (%)", "the judge on real images (%)", "diversity (% of real)"]
    assert [trace["name"] for trace in scores["data"]] == names
    assert scores["data"][0]["y"] == generator_box.value.metrics["agreement_per_class"]
    assert min(scores["data"][1]["y"]) > 96  # the judge reads real digits of every class

    # the export makes nothing until asked: a visit or a rerun costs no 60,000 digits
    assert [b.proto.label for b in at.get("download_button")] == ["Download the grid (PNG)"]
    assert "Make the file: 6,000 digits (CSV)" in [b.label for b in at.button]
    [fmt] = [r for r in at.radio if r.label == "Format"]
    fmt.set_value("npz").run()
    assert "Make the file: 6,000 digits (NPZ)" in [b.label for b in at.button]


def test_a_gan_run_trains_live_and_joins_the_generators():
    at = open_page("app_pages/5_Generate.py")
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
    assert any(option.startswith("tiny gan · 1 epoch ·") for option in generator_box.options), generator_box.options


def export_button(at: AppTest):
    [button] = [b for b in at.button if b.label.startswith("Make the file")]
    return button


def test_the_export_makes_the_file_with_a_progress_bar_once_then_offers_it(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the page keeps made files
    at = open_page("app_pages/5_Generate.py")
    [count] = [n for n in at.number_input if n.label == "How many"]
    count.set_value(1100)
    [fmt] = [r for r in at.radio if r.label == "Format"]
    fmt.set_value("npz")
    [seed] = [n for n in at.number_input if n.key == "export-seed"]
    seed.set_value(4).run()
    at = export_button(at).click().run()
    assert not at.exception
    [bar] = at.get("progress")
    assert (bar.value, bar.text) == (100, "1,100 digits made")
    [made] = (tmp_path / "mnist-lab-exports").iterdir()
    [download] = [b.proto.label for b in at.get("download_button") if "digits" in b.proto.label]
    assert download == f"Download 1,100 digits (NPZ, {made.stat().st_size / 1e6:.1f} MB)"
    [record] = [s.value for s in at.selectbox if s.label == "Generator"]
    expected = gan.synthetic_dataset(gan.load_generator(record.path), 1100, seed=4)
    archive = np.load(made)
    assert torch.equal(torch.from_numpy(archive["images"]), expected.images)
    assert torch.equal(torch.from_numpy(archive["labels"]), expected.labels)

    made_at = made.stat().st_mtime_ns
    at.run()  # any rerun: the same file, not made again
    assert not at.exception and not at.get("progress")
    assert export_button(at).disabled
    assert [p.stat().st_mtime_ns for p in (tmp_path / "mnist-lab-exports").iterdir()] == [made_at]
    assert download in [b.proto.label for b in at.get("download_button")]

    [seed] = [n for n in at.number_input if n.key == "export-seed"]
    seed.set_value(5).run()  # other settings: the old file goes, the button makes a new one
    assert not list((tmp_path / "mnist-lab-exports").iterdir())
    assert not export_button(at).disabled
    assert [b.proto.label for b in at.get("download_button")] == ["Download the grid (PNG)"]


def test_a_generator_file_with_hostile_metadata_is_refused_and_the_page_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    file = "mnist/hostile.safetensors"
    metadata = {"arch": gan.ARCH, "dataset": "mnist", "latent": "1000000000", "width": "64", "num_classes": "10"}
    checkpoints.write_weights(gan.Generator(), tmp_path / file, metadata)  # real tensors, a lying latent
    checkpoints.add_record(tmp_path, checkpoints.ModelRecord(
        name="hostile", arch=gan.ARCH, dataset="mnist", file=file, kind="generator", metrics={"agreement": 50.0},
        epochs=1, seconds=1.0, device="CPU", date=checkpoints.now(), code_version=checkpoints.code_version(),
        folder=tmp_path))
    at = open_page("app_pages/5_Generate.py")
    [generator_box] = [s for s in at.selectbox if s.label == "Generator"]
    generator_box.select_index(generator_box.options.index("hostile · 1 epoch · label agreement 50.0 %")).run()
    assert not at.exception
    message = f"This generator cannot be loaded: {tmp_path / file}: metadata latent='1000000000' is not a whole " \
              f"number between 1 and 1024"
    assert message in [e.value for e in at.error]
    assert [t.label for t in at.tabs] == ["Gallery", "Latent walks", "Scores", "Train", "Export"]
    assert any(b.label == "Start training" for b in at.button)  # training a new one still works

    [generator_box] = [s for s in at.selectbox if s.label == "Generator"]
    generator_box.select_index(0).run()  # the shipped generator draws as before
    assert not at.exception and not at.error
    assert "50 generated digits of all classes, seed 0. Each column is one class." in image_captions(at)
