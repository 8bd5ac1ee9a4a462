"""The app headless: every page renders, and the Train page runs a job to the end."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui
from core.jobs import JobSnapshot
from core.launch import device_slots, worker_threads
from core.predict import PAGE_THREADS
from core.recipes import recipe
from core.training import TrainConfig, describe_device

REPO = Path(__file__).resolve().parent.parent
HOME = ui.PAGES[0].file


def open_page(page: str = HOME) -> AppTest:
    """Start at the entry point and switch to the page, as the browser does."""
    # Generous for a slow 2-core machine busy with other tests: a hang, not a slow page, should fail here.
    at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=300)
    at.switch_page(page)
    return at.run()


def test_the_page_list_holds_every_page_file_and_starts_at_home():
    files = sorted(f"app_pages/{p.name}" for p in (REPO / "app_pages").glob("*.py"))
    assert sorted(p.file for p in ui.PAGES) == files  # a file left out of the list is a page nobody can open
    assert ui.PAGES[0].title == "Home"


@pytest.mark.parametrize("page", [p.file for p in ui.PAGES])
def test_every_page_renders(page):
    at = open_page(page)
    assert not at.exception
    assert at.title and at.radio(key=ui.DATASET_KEY).label == "Dataset"


def test_home_shows_the_device_and_model_counts():
    at = open_page()
    labels = [m.label for m in at.metric]
    assert labels == ["Running on", "Trained models · MNIST", "Trained models · Fashion-MNIST"]
    assert [link.value for link in at.page_link] == [p.title for p in ui.PAGES[1:]]
    assert at.metric[0].value == describe_device(threads=worker_threads("cpu", device_slots()))  # where runs train


def run_until(at: AppTest, done, timeout: float = 120) -> AppTest:
    """Fragments do not tick inside AppTest: rerun the page until the condition holds."""
    deadline = time.monotonic() + timeout
    while not done(at):
        assert time.monotonic() < deadline, "timed out waiting for the page"
        time.sleep(0.3)
        at.run()
        assert not at.exception
    return at


def start(at: AppTest, *, arch: str, epochs: int, images: int | None, name: str) -> AppTest:
    [arch_box] = [s for s in at.selectbox if s.label == "Architecture"]
    arch_box.select(arch).run()
    [epochs_slider] = [s for s in at.slider if s.label == "Epochs"]
    epochs_slider.set_value(epochs)
    [images_slider] = [s for s in at.select_slider if s.label == "Training images"]
    images_slider.set_value(images or 60_000)
    [name_box] = [t for t in at.text_input if t.label == "Run name"]
    name_box.input(name)
    [button] = [b for b in at.button if b.label == "Start training"]
    return button.click().run()


def caption_has(at: AppTest, text: str) -> bool:
    return any(text in c.value for c in at.caption)


def test_a_tiny_run_goes_from_start_to_a_saved_model():
    at = open_page("app_pages/1_Train.py")
    at = start(at, arch="lenet5", epochs=2, images=500, name="tiny run")
    assert not at.exception
    at = run_until(at, lambda at: caption_has(at, "saved"))
    assert any("saved as “tiny run”" in s.value for s in at.success)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    loss = next(c for c in charts if c["layout"]["title"]["text"] == "Loss")
    assert len(loss["data"][0]["x"]) == 8  # 450 images in batches of 128: each of the 2 x 4 batches reported
    assert loss["data"][0]["mode"] == "lines+markers"  # too few points for a line alone
    assert len(loss["data"][1]["x"]) == 2  # validation loss per epoch
    assert any(c["data"][0]["type"] == "heatmap" for c in charts)
    assert [m.label for m in at.metric][-3:] == ["Test accuracy", "Best epoch", "Training time"]


def test_the_settings_start_from_the_recipe_and_reach_the_run():
    from core import checkpoints

    at = open_page("app_pages/1_Train.py")
    at.radio(key=ui.DATASET_KEY).set_value("fashion").run()
    [arch_box] = [s for s in at.selectbox if s.label == "Architecture"]
    arch_box.select("resnet18").run()
    fashion = recipe("resnet18", "fashion")
    [epochs] = [s for s in at.slider if s.label == "Epochs"]
    [warp] = [t for t in at.toggle if t.label.startswith("Rotations and scales")]
    [erase] = [s for s in at.slider if s.label.startswith("Random erasing")]
    assert (epochs.value, warp.value, erase.value) == (fashion.epochs, fashion.warp, fashion.erase)
    at = start(at, arch="resnet18", epochs=1, images=500, name="fashion run")
    at = run_until(at, lambda at: caption_has(at, "saved"))
    [run] = [r for r in checkpoints.read_manifest(checkpoints.runs_dir()) if r.name == "fashion run"]
    assert run.dataset == "fashion" and (run.config["warp"], run.config["erase"]) == (False, fashion.erase)
    assert run.config["momentum"] == fashion.momentum and run.config["nesterov"] == fashion.nesterov


def test_the_settings_outlive_a_page_switch_and_each_architecture_keeps_its_own():
    at = open_page("app_pages/1_Train.py")
    [arch_box] = [s for s in at.selectbox if s.label == "Architecture"]
    arch_box.select("alexnet").run()
    estimate = [c.value for c in at.caption if c.value.startswith("Estimate on this server")]
    [epochs] = [s for s in at.slider if s.label == "Epochs"]
    epochs.set_value(30).run()  # not started: settings count as they are set
    [augment] = [t for t in at.toggle if t.label == "Augmentation"]
    augment.set_value(False).run()
    assert not [j for j in ui.job_manager().snapshots() if j.owner == at.session_state["session_id"]]
    # the estimate follows the settings: 30 epochs instead of the recipe's
    assert [c.value for c in at.caption if c.value.startswith("Estimate on this server")] != estimate
    assert any("30 epochs of 60,000 images" in c.value for c in at.caption)
    at.switch_page("app_pages/2_Draw.py").run()
    at.switch_page("app_pages/1_Train.py").run()
    assert not at.exception
    assert [s.value for s in at.selectbox if s.label == "Architecture"] == ["alexnet"]
    assert [s.value for s in at.slider if s.label == "Epochs"] == [30]
    assert [t.value for t in at.toggle if t.label == "Augmentation"] == [False]
    [arch_box] = [s for s in at.selectbox if s.label == "Architecture"]
    arch_box.select("lenet5").run()  # another architecture starts from its own recipe
    assert [s.value for s in at.slider if s.label == "Epochs"] == [recipe("lenet5").epochs]


def test_early_stopping_without_a_validation_split_is_refused_on_the_form():
    at = open_page("app_pages/1_Train.py")
    [val] = [s for s in at.slider if s.label == "Validation split"]
    val.set_value(0.0)
    [patience] = [n for n in at.number_input if n.label == "Early stopping patience"]
    patience.set_value(3)
    [button] = [b for b in at.button if b.label == "Start training"]
    button.click().run()
    assert [e.value for e in at.error] == ["early stopping (patience 3) watches the validation split, which is 0: "
                                           "choose a validation split above 0, or patience 0"]


def snapshot(job_id: int, status: str, **fields) -> JobSnapshot:
    job = JobSnapshot(
        id=job_id, name=f"run {job_id}", owner="b" * 16, config=TrainConfig(arch="mlp"), status=status, position=None,
        created=0.0, started=None, finished=None, device="cpu", phase="", steps=(), epochs=(), progress=0.0,
        samples_per_s=0.0, eta_s=None, last_step=None, error=None, result=None, pid=None)
    return replace(job, **fields)


def test_a_new_visitor_is_shown_the_running_run_not_a_queued_one():
    def page():
        import streamlit as st
        from test_app import snapshot

        import ui

        jobs = [snapshot(1, "done"), snapshot(2, "running"), snapshot(3, "queued"), snapshot(4, "queued")]
        st.write(ui.pick_job(jobs, owner="a" * 16, shown_key="shown").name)

    at = AppTest.from_function(page).run()
    assert not at.exception and at.markdown[0].value == "run 2"


def test_a_short_runs_curves_show_their_points_and_a_missing_validation_split_is_said():
    steps = tuple({"global_step": i, "epoch": 1, "loss": 1 / i, "accuracy": 50.0, "lr": 0.1} for i in range(1, 5))
    job = snapshot(90_002, "done", steps=steps, epochs=({"epoch": 1, "val_loss": None, "val_accuracy": None},),
                   config=TrainConfig(arch="mlp", val_split=0.0, patience=0),
                   last_step={**steps[-1], "steps_per_epoch": 4})
    for figure in ui.loss_and_accuracy_charts(job):
        [train_curve] = figure.data  # no validation curve: there is no validation split, and the chart says so
        assert train_curve.mode == "lines+markers" and list(train_curve.x) == [1, 2, 3, 4]
        assert [a.text for a in figure.layout.annotations] == ["no validation split"]
    long = tuple({"global_step": i, "epoch": 1, "loss": 1 / i, "accuracy": 50.0, "lr": 0.1} for i in range(1, 101))
    loss, _ = ui.loss_and_accuracy_charts(replace(job, id=90_003, steps=long, config=TrainConfig(arch="mlp")))
    assert loss.data[0].mode == "lines" and not loss.layout.annotations


def test_a_run_over_the_students_limit_is_refused_with_the_limit_said():
    at = open_page("app_pages/1_Train.py")
    assert caption_has(at, "train up to 1,200,000 images per run")
    at = start(at, arch="lenet5", epochs=30, images=None, name="too long")
    assert any("30 epochs x 60,000 images = 1,800,000 images" in e.value for e in at.error)
    assert not [j for j in ui.job_manager().snapshots() if j.name == "too long"]


def test_a_stopped_run_shows_as_stopped():
    at = open_page("app_pages/1_Train.py")
    at = start(at, arch="lenet5", epochs=10, images=None, name="long run")
    at = run_until(at, lambda at: any(b.label == "Stop" for b in at.button) and caption_has(at, "training"))
    [stop] = [b for b in at.button if b.label == "Stop"]
    stop.click().run()
    at = run_until(at, lambda at: caption_has(at, "stopped, best weights saved"))
    assert any("Stopped; the best weights so far were saved" in s.value for s in at.success)


def canvas_state(picture) -> dict:
    """What streamlit-drawable-canvas keeps in session state after a stroke."""
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}, "backgroundFit": None}


def test_draw_page_asks_for_a_digit_when_the_canvas_is_empty():
    at = open_page("app_pages/2_Draw.py")
    assert not at.exception
    assert any("Draw a digit on the canvas" in i.value for i in at.info)
    assert not at.dataframe


def test_draw_page_shows_the_stages_and_every_models_answer(mnist_test):
    import numpy as np

    from core import checkpoints

    seven = mnist_test.images[0].numpy()  # the first test digit is a 7
    grey = np.kron(seven, np.ones((10, 10), dtype=np.uint8))
    at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=120)
    at.switch_page("app_pages/2_Draw.py")
    at.session_state["draw_canvas"] = canvas_state(np.dstack([grey] * 3 + [np.full_like(grey, 255)]))
    at.run()
    assert not at.exception
    captions = [image.proto.imgs[0].caption for image in at.get("image")]
    assert captions == ["your picture", "ink cropped", "longer side 20 px", "28x28, centred by mass",
                        "normalised (mean\u00a00, sd\u00a01)"]
    [naive] = [t for t in at.toggle if t.label.startswith("Naive resize")]
    naive.set_value(True).run()  # nothing is cropped, scaled or centred, and no caption says so
    assert [image.proto.imgs[0].caption for image in at.get("image")] == [
        "your picture", "squashed to 28x28", "normalised (mean\u00a00, sd\u00a01)"]
    consensus = next(m.value for m in at.markdown if "class='consensus'" in m.value)
    assert ">7</div>" in consensus
    # answered with the page's torch threads, and said so
    assert any(f"on CPU, {PAGE_THREADS} thread" in c.value for c in at.caption if "all models" in c.value)
    [table] = at.dataframe
    student = at.session_state["session_id"]  # the shipped models and this student's runs: none yet
    assert len(table.value) == len([r for r in checkpoints.find_models("mnist") if r.seen_by(student)])


def on_the_canvas(state: dict) -> AppTest:
    """The Draw page after the canvas component reported `state`."""
    at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=120)
    at.switch_page("app_pages/2_Draw.py")
    at.session_state["draw_canvas"] = state
    return at.run()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, read from the header
def test_draw_page_refuses_a_crafted_canvas_payload_before_decoding_it():
    import base64

    from test_preprocess import crafted_png

    # A few kB that declare 13000x13000 pixels: decoded, they took 6.8 GB of the server's memory.
    url = "data:image/png;base64," + base64.b64encode(crafted_png(13000, 13000)).decode()
    at = on_the_canvas({"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}, "backgroundFit": None})
    assert not at.exception
    assert [e.value for e in at.error] == ["the drawing has too many pixels (13000x13000); at most 78,400 are accepted"]
    assert not at.dataframe and not at.get("image")


def test_draw_page_says_why_the_canvas_holds_no_digit_and_asks_again_once_cleared():
    import numpy as np

    def canvas(ink: np.ndarray) -> dict:
        return canvas_state(np.dstack([ink] * 3 + [np.full_like(ink, 255)]))

    covered, dot, stroke = (np.zeros((280, 280), np.uint8) for _ in range(3))
    covered[:] = 255
    dot[140, 140] = 255
    stroke[140:146, 140:149] = 255  # 3 pixels long with the thinnest pen (6)
    at = on_the_canvas(canvas(covered))
    assert not at.exception and not at.dataframe
    assert [w.value for w in at.warning] == ["Nothing to classify: the picture is covered in ink, with no paper around "
                                             "the drawing: leave space around it (draw it smaller, or crop the picture "
                                             "less)."]
    for ink in (dot, stroke):
        at.session_state["draw_canvas"] = canvas(ink)
        at.run()
        assert not at.exception and not at.dataframe
        assert [w.value for w in at.warning] == ["Nothing to classify: too little ink to read (a dot or a short "
                                                 "stroke); draw it bigger."]
    at.session_state["draw_canvas"] = canvas(np.zeros((280, 280), np.uint8))  # the toolbar's clear
    at.run()
    assert not at.warning and any("Draw a digit on the canvas" in i.value for i in at.info)


def test_draw_page_reads_a_grey_and_alpha_canvas_and_keeps_it_across_pages(mnist_test):
    import base64
    import io

    import numpy as np
    from PIL import Image

    ink = np.kron(mnist_test.images[0].numpy(), np.ones((10, 10), dtype=np.uint8))  # a 7
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([np.full_like(ink, 255), ink])).save(buffer, format="PNG")  # LA: white pen, see-through
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    at = on_the_canvas({"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}, "backgroundFit": None})
    assert not at.exception
    assert ">7</div>" in next(m.value for m in at.markdown if "class='consensus'" in m.value)
    at.switch_page(HOME).run()
    del at.session_state["draw_canvas"]  # as Streamlit drops the state of a component that is not on the page
    at.switch_page("app_pages/2_Draw.py").run()  # the canvas comes back with the drawing, and so do the answers
    assert not at.exception and at.session_state["draw_restore"]["objects"]
    assert ">7</div>" in next(m.value for m in at.markdown if "class='consensus'" in m.value)


def test_undo_takes_back_the_last_stroke_and_clear_all_of_them(mnist_test):
    import numpy as np

    seven = np.kron(mnist_test.images[0].numpy(), np.ones((10, 10), dtype=np.uint8))
    state = canvas_state(np.dstack([seven] * 3 + [np.full_like(seven, 255)]))
    state["drawing"]["raw"] = {"objects": [{"type": "path", "n": 1}, {"type": "path", "n": 2}]}
    at = on_the_canvas(state)
    [undo] = [b for b in at.button if b.label == "Undo"]
    undo.click().run()
    # The canvas is drawn again from the first stroke; until it sends its picture the answer stays as it was.
    assert at.session_state["draw_restore"]["objects"] == [{"type": "path", "n": 1}]
    assert not at.exception and ">7</div>" in next(m.value for m in at.markdown if "class='consensus'" in m.value)
    [undo] = [b for b in at.button if b.label == "Undo"]
    undo.click().run()  # a second click before the canvas answered takes back the second stroke too
    assert at.session_state["draw_restore"]["objects"] == []
    assert any("Draw a digit on the canvas" in i.value for i in at.info) and not at.dataframe
    again = canvas_state(np.dstack([np.roll(seven, 20, axis=1)] * 3 + [np.full_like(seven, 255)]))
    at.session_state["draw_canvas"] = again  # drawn again: the canvas sends its new picture
    at.run()
    assert any("class='consensus'" in m.value for m in at.markdown)
    [clear] = [b for b in at.button if b.label == "Clear"]
    clear.click().run()
    assert at.session_state["draw_restore"]["objects"] == [] and not at.dataframe
    assert [b.disabled for b in at.button if b.label in ("Undo", "Clear")] == [True, True]


def text_on(at: AppTest) -> list[str]:
    """Every text a student reads on a page: headings, paragraphs, captions, messages and widget labels."""
    shown = [e.value for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                                  "success", "error") for e in at.get(kind)]
    return shown + [w.label for kind in ("button", "selectbox", "slider", "select_slider", "toggle", "radio",
                                         "number_input", "text_input", "multiselect") for w in at.get(kind)]


@pytest.mark.parametrize("page", ["app_pages/0_Home.py", "app_pages/2_Draw.py", "app_pages/4_Inside.py",
                                  "app_pages/5_Generate.py"])
def test_on_fashion_mnist_the_pages_speak_of_clothes_not_digits(page):
    at = open_page(page)
    assert any("digit" in text.lower() for text in text_on(at))  # the MNIST wording is there to be replaced
    at.radio(key=ui.DATASET_KEY).set_value("fashion").run()
    assert not at.exception
    # Home's introduction names both datasets, and may
    digits = [text for text in text_on(at) if "digit" in text.lower() and "digits (MNIST) or clothes" not in text]
    assert not digits


@pytest.mark.parametrize("given", [None, "0123456789abcdef", "not-a-token", "<script>"])
def test_a_tab_belongs_to_the_token_in_its_address_or_to_a_new_one(given):
    at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=300)
    if given is not None:
        at.query_params[ui.OWNER_PARAM] = given
    at.run()
    token = at.session_state["session_id"]
    assert at.query_params[ui.OWNER_PARAM] in (token, [token])
    if given == "0123456789abcdef":
        assert token == given  # a reload keeps the student
    else:
        assert re.fullmatch(r"[0-9a-f]{16}", token) and token != given


def sidebar_count(at: AppTest) -> str:
    return next(c.value for c in at.sidebar.caption if "trained models" in c.value)


def test_a_student_sees_their_own_runs_everyone_s_on_request_and_deletes_only_their_own(tmp_path, monkeypatch):
    import torch

    from core import checkpoints
    from core.models import get_model

    monkeypatch.setenv(checkpoints.RUNS_ENV, str(tmp_path))
    ann, bob = "0123456789abcdef", "fedcba9876543210"
    torch.manual_seed(0)
    checkpoints.save_classifier(get_model("lenet5"), name="ann's run", arch="lenet5", dataset="mnist",
                                summary={"test_accuracy": 50.0, "epochs": 1, "seconds": 1.0, "device": "CPU"},
                                owner=ann)
    shipped = len(checkpoints.find_models("mnist", include_runs=False))

    def tab(owner: str, page: str = HOME) -> AppTest:
        at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=300)
        at.query_params[ui.OWNER_PARAM] = owner
        at.switch_page(page)
        return at.run()

    assert f"MNIST: {shipped + 1} trained models" in sidebar_count(tab(ann))
    at = tab(bob)
    assert f"MNIST: {shipped} trained models" in sidebar_count(at)
    [everyone] = [t for t in at.sidebar.toggle if t.label == "Everyone's runs"]
    everyone.set_value(True).run()
    assert f"MNIST: {shipped + 1} trained models" in sidebar_count(at)

    at = tab(bob, "app_pages/1_Train.py")
    assert not [b for b in at.button if b.label == "Delete"]  # not bob's to delete
    at = tab(ann, "app_pages/1_Train.py")
    [delete] = [b for b in at.button if b.label == "Delete"]
    delete.click().run()
    assert not at.exception and checkpoints.read_manifest(tmp_path) == []
    assert not list((tmp_path / "mnist").glob("*.safetensors"))


def test_the_teacher_key_opens_teacher_mode_which_stops_anyones_run_and_sets_the_limits(monkeypatch):
    from core.jobs import Limits
    from core.training import TrainConfig

    manager = ui.job_manager()
    monkeypatch.setattr(manager, "teacher_key", "open sesame")
    job = manager.submit(TrainConfig(arch="lenet5", epochs=10), name="a student's run", owner="0123456789abcdef")
    at = open_page("app_pages/1_Train.py")

    def sign_in(key: str) -> None:
        [box] = [t for t in at.sidebar.text_input if t.label == "Teacher key"]
        box.input(key)
        [button] = [b for b in at.sidebar.button if b.label == "Teacher"]
        button.click().run()

    sign_in("a guess")
    assert any("not the teacher key" in e.value for e in at.sidebar.error)
    assert not any(b.label == "Stop" for b in at.button)
    sign_in("open sesame")
    assert any("Teacher mode" in c.value for c in at.sidebar.caption)
    try:
        at.session_state["shown_job"] = job
        at.run()
        [stop] = [b for b in at.button if b.label == "Stop"]  # someone else's run
        stop.click().run()
        assert manager.wait(job, timeout=120).status == "stopped"

        [queued] = [n for n in at.number_input if n.label == "Runs waiting per student"]
        queued.set_value(3)
        [save] = [b for b in at.button if b.label == "Save the limits"]
        save.click().run()
        assert manager.limits.queued_per_student == 3
    finally:
        manager.set_limits(Limits(), teacher_key="open sesame")


def test_live_charts_hold_a_bounded_number_of_points_the_latest_kept():
    points = [{"global_step": i, "loss": 1 / (i + 1)} for i in range(1, 10_001)]
    shown = ui.thinned(points)
    assert len(shown) <= ui.CHART_POINTS and shown[-1] == points[-1]
    gaps = {b["global_step"] - a["global_step"] for a, b in zip(shown, shown[1:], strict=False)}
    assert gaps == {25}  # evenly spaced
    assert ui.thinned(points[:50]) == points[:50]  # a short run is shown whole


def test_a_running_jobs_curves_are_drawn_once_an_interval_for_every_tab(monkeypatch):
    """Every tab watching a run gets the same charts until CHART_EVERY seconds have passed (the browser
    does not redraw an unchanged chart); a finished run's charts hold all its points."""
    steps = tuple({"global_step": i, "epoch": 1, "loss": 1 / i, "accuracy": 50.0, "lr": 0.1} for i in range(1, 51))
    job = JobSnapshot(
        id=90_001, name="watched", owner="a" * 16, config=TrainConfig(arch="mlp"), status="running", position=None,
        created=0.0, started=0.0, finished=None, device="cpu", phase="training", steps=steps[:10], epochs=(),
        progress=0.1, samples_per_s=1000.0, eta_s=60.0, last_step={**steps[9], "steps_per_epoch": 50}, error=None,
        result=None, pid=None,
    )
    now = [1_000.0 * ui.CHART_EVERY]
    monkeypatch.setattr(time, "time", lambda: now[0])
    first = ui.loss_and_accuracy_charts(job)
    now[0] += ui.LIVE_EVERY  # another tab, or the next update, within the interval
    assert ui.loss_and_accuracy_charts(replace(job, steps=steps[:12])) is first
    now[0] += ui.CHART_EVERY
    loss, accuracy = ui.loss_and_accuracy_charts(replace(job, steps=steps[:30]))
    assert len(loss.data[0].x) == len(accuracy.data[0].x) == 30
    loss, _ = ui.loss_and_accuracy_charts(replace(job, status="done", steps=steps))
    assert list(loss.data[0].x) == list(range(1, 51))
