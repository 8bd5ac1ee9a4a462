"""Generate: a conditional GAN draws pictures of a chosen class; train it live, browse, walk its latent space."""

import contextlib
import tempfile
import time
import uuid
from pathlib import Path

import streamlit as st

import ui
from core import checkpoints, data, gan
from core.jobs import JobSnapshot
from core.models import get_card

TEXT = ui.texts("generate")
IMAGE_LIMITS = {2000: "2,000", 10_000: "10,000", None: TEXT["all_images"]}
MIME = {"csv": "text/csv", "npz": "application/octet-stream", "pt": "application/octet-stream"}
# Made files wait here for their download, one per session: not in session_state, where 30 students'
# 110 MB CSVs would stay in the server's memory.
EXPORTS = Path(tempfile.gettempdir()) / "mnist-lab-exports"
EXPORT_KEEP_S = 3600  # files of sessions that left are removed when someone makes a new one

dataset = ui.dataset()
classes = ui.classes(dataset)
nouns = ui.nouns(dataset)
manager = ui.job_manager()
owner = ui.session_id()

st.title(TEXT["title"])
st.write(TEXT["intro"].format(**nouns))


def describe(record: checkpoints.ModelRecord) -> str:
    text = TEXT["shipped"] if record.shipped else TEXT["run"]
    epochs = TEXT["one_epoch" if record.epochs == 1 else "epochs_count"].format(n=record.epochs)
    return text.format(name=record.name, epochs=epochs, agreement=record.metrics["agreement"])


def picture(pixels, caption: str | None = None) -> bytes:
    png = gan.png_bytes(pixels, scale=2)
    st.image(png, caption=caption, output_format="PNG")
    return png


records = gan.list_generators(dataset)
record, generator = None, None
if records:
    record = st.selectbox(TEXT["generator"], records, format_func=describe)
    try:
        generator = ui.generator(str(record.path), record.date)
    except (checkpoints.CheckpointError, OSError) as error:
        st.error(TEXT["broken"].format(error=ui.say(error)))
else:
    st.info(TEXT["none"].format(dataset=data.get_spec(dataset).title))

gallery, walks, scores, train, export = st.tabs(TEXT["tabs"])

with gallery:
    if generator:
        left, middle, right = st.columns(3)
        chosen = ui.class_choice(TEXT["class"], classes, first=TEXT["all"], where=left)
        count = middle.select_slider(TEXT["count"], [10, 20, 50, 100, 200], value=50)
        seed = right.number_input(TEXT["seed"], 0, 2**31 - 1, 0, key="gallery-seed")
        samples = gan.synthetic_dataset(generator, count, seed=int(seed), label=chosen).images.numpy()
        what = TEXT["all"] if chosen is None else f"“{classes[chosen]}”"
        caption = TEXT["gallery_caption"].format(count=count, what=what, seed=seed, **nouns)
        png = picture(gan.make_grid(samples, columns=10), caption + (TEXT["columns"] if chosen is None else ""))
        st.download_button(TEXT["download_png"], png, file_name=f"cgan-{dataset}-seed{seed}.png",
                           mime="image/png", icon=":material/download:", on_click="ignore")

with walks:
    if generator:
        st.subheader(TEXT["sweep"])
        st.caption(TEXT["sweep_help"])
        left, right = st.columns(2)
        rows = left.slider(TEXT["rows"], 1, 10, 5)
        first = right.number_input(TEXT["first_seed"], 0, 2**31 - 1, 0, key="sweep-seed")
        sweep = gan.class_sweep(generator, range(int(first), int(first) + rows)).numpy()
        picture(gan.make_grid(sweep, columns=len(classes)), " · ".join(classes))

        st.subheader(TEXT["walk"])
        st.caption(TEXT["walk_help"].format(**nouns))
        a, b, c, d = st.columns(4)
        label = a.selectbox(TEXT["class"], range(len(classes)), format_func=lambda i: classes[i], key="walk-class")
        seed_a = b.number_input(TEXT["seed_a"], 0, 2**31 - 1, 1)
        seed_b = c.number_input(TEXT["seed_b"], 0, 2**31 - 1, 2)
        steps = d.slider(TEXT["steps"], 3, 20, 10)
        walk = gan.interpolation(generator, label, int(seed_a), int(seed_b), steps=steps).numpy()
        picture(gan.make_grid(walk, columns=steps))

with scores:
    if record and "judge" in record.metrics:  # an entry of an older manifest may hold its agreement alone
        measured = record.metrics
        st.caption(TEXT["scores_help"].format(judge=get_card(measured["judge"]).title,
                                              judge_accuracy=measured["judge_accuracy"], **nouns))
        a, b, c = st.columns(3)
        a.metric(TEXT["agreement"], f"{measured['agreement']:.2f} %")
        b.metric(TEXT["fid"], f"{measured['fid']:.3f}")
        b.caption(TEXT["fid_help"].format(ref=measured["fid_reference"], **nouns))
        if measured.get("cas") is not None:
            c.metric(TEXT["cas"], f"{measured['cas']:.2f} %")
            c.caption(TEXT["cas_help"].format(**nouns))
        else:
            c.metric(TEXT["cas"], "–")
            c.caption(TEXT["cas_none"])
        st.plotly_chart(ui.gan_scores_chart(measured, classes, agreement_target=dataset == "mnist"), width="stretch")

with train:
    st.caption(TEXT["train_intro"])
    with st.form("gan-settings"):
        a, b, c, d = st.columns(4)
        epochs = a.slider(TEXT["epochs"], 1, 50, 20)
        batch_size = b.select_slider(TEXT["batch"], [32, 64, 128, 256], value=128)
        limit = c.select_slider(TEXT["images"], list(IMAGE_LIMITS), value=None, format_func=IMAGE_LIMITS.get)
        seed = d.number_input(TEXT["seed"], 0, 2**31 - 1, 0, key="train-seed")
        name = st.text_input(TEXT["name"], f"cgan-{owner[:4]}", max_chars=60)
        if st.form_submit_button(TEXT["start"], type="primary", icon=":material/play_arrow:"):
            config = gan.GanConfig(dataset=dataset, epochs=epochs, batch_size=batch_size, seed=int(seed), limit=limit)
            ui.submit_job(config, name=name, owner=owner, shown_key="shown_gan_job")


def show(job: JobSnapshot) -> None:
    job = ui.job_status(job, owner=owner)
    if job.result:
        st.success(TEXT["done" if job.status == "done" else "stopped"].format(name=ui.plain(job.name)))
    left, right = st.columns(2)
    if job.steps:
        left.plotly_chart(ui.gan_loss_chart(job), width="stretch")
    if not job.epochs and job.active:
        right.caption(TEXT["grid_soon"])
    if job.epochs:
        with right:
            shown = len(job.epochs)
            if shown > 1:
                shown = st.slider(TEXT["scrub"], 1, len(job.epochs), len(job.epochs), key=f"scrub-{job.id}")
            picture(job.epochs[shown - 1]["grid"], TEXT["grid_caption"].format(epoch=shown))
    if job.result:
        chart = ui.gan_scores_chart(job.result["scores"], classes, agreement_target=dataset == "mnist")
        st.plotly_chart(chart, width="stretch")


polling = manager.busy()


@st.fragment(run_every=ui.LIVE_EVERY if polling else None)
def live() -> None:
    jobs = [j for j in manager.snapshots(history=False) if j.is_gan]
    if not jobs:
        st.info(TEXT["nothing"])
        return
    show(manager.snapshot(ui.pick_job(jobs, owner=owner, shown_key="shown_gan_job").id))
    if polling and not manager.busy():
        st.rerun()  # everything finished: one full run to stop polling, and the new generator is listed


with train:
    live()


def made_file(wanted: tuple) -> dict | None:
    """This session's file made with these settings (its path and size); one made with others is removed."""
    made = st.session_state.get("export")
    if made and made["wanted"] == wanted and Path(made["path"]).is_file():
        return made
    if made:
        Path(made["path"]).unlink(missing_ok=True)
        del st.session_state["export"]
    return None


def make_file(wanted: tuple, count: int, fmt: str, seed: int) -> dict | None:
    bar = st.progress(0.0, text=TEXT["making"].format(done=0, total=count, **nouns))
    path = EXPORTS / f"{owner}-{uuid.uuid4().hex[:8]}.{fmt}"

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=TEXT["making"].format(done=done, total=total, **nouns))

    try:
        EXPORTS.mkdir(exist_ok=True)
        for old in EXPORTS.iterdir():
            with contextlib.suppress(FileNotFoundError):  # another session may remove it first
                if time.time() - old.stat().st_mtime > EXPORT_KEEP_S:
                    old.unlink()
        # a rerun during the export stops it in a progress call, and the half-made file is removed
        gan.export_dataset(generator, count, path, fmt=fmt, seed=seed, on_progress=progress)
        size = path.stat().st_size
    except (checkpoints.CheckpointError, OSError) as error:  # the temporary folder is full or read-only
        st.error(TEXT["export_failed"].format(error=ui.say(error)))
        return None
    bar.progress(1.0, text=TEXT["made"].format(total=count, **nouns))
    made = st.session_state["export"] = {"wanted": wanted, "path": str(path), "size": size}
    return made


with export:
    if generator:
        st.caption(TEXT["export_intro"])
        left, middle, right = st.columns(3)
        count = int(left.number_input(TEXT["export_count"], 10, 60_000, 6000, step=1000))
        fmt = middle.radio(TEXT["format"], gan.EXPORT_FORMATS, horizontal=True, format_func=str.upper)
        seed = int(right.number_input(TEXT["seed"], 0, 2**31 - 1, 0, key="export-seed"))
        wanted = (str(record.path), record.date, count, fmt, seed)
        made = made_file(wanted)  # a rerun with the same settings makes nothing again
        if st.button(TEXT["make"].format(count=count, fmt=fmt.upper(), **nouns), icon=":material/build:",
                     disabled=made is not None):
            made = make_file(wanted, count, fmt, seed)
        if made:
            st.caption(TEXT["kept"])
            st.download_button(
                TEXT["download"].format(count=count, fmt=fmt.upper(), size=made["size"] / 1e6, **nouns),
                # read when clicked: Streamlit holds the bytes only while it sends them
                Path(made["path"]).read_bytes, file_name=f"fake_{dataset}.{fmt}", mime=MIME[fmt],
                icon=":material/download:", on_click="ignore",
            )
