"""What every page of the app shares: the page list, the chosen dataset, server-wide resources, charts.

Pages stay thin: they lay out widgets and call ``core``; this module holds the Streamlit glue that
more than one page needs. Nothing here trains, predicts or measures.
"""

from __future__ import annotations

import html
import math
import re
import secrets
import time
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import plotly.graph_objects as go
import streamlit as st
import torch
from streamlit.delta_generator import DeltaGenerator

from core import checkpoints, data, gan, i18n
from core.cost import architecture_size
from core.jobs import JobConfig, JobManager, JobSnapshot
from core.launch import worker_threads
from core.models import get_card
from core.predict import PAGE_THREADS, Ensemble
from core.training import clock, describe_device

DATASET_KEY = "dataset"
LANGUAGE_KEY = "language"  # session state: this tab's language, "zh" or "en"
LANGUAGE_PARAM = "lang"  # the query parameter that carries it: a teacher's link with ?lang=zh opens in Chinese
# Chinese needs a font with its glyphs: Debian's fonts-noto-cjk gives Noto Sans CJK SC, macOS has PingFang SC and
# Windows Microsoft YaHei. The charts name them after the lab's own font (Plotly draws its text in SVG).
FONT = ('"Source Sans", "Source Sans Pro", "Noto Sans CJK SC", "Noto Sans SC", "PingFang SC", "Microsoft YaHei", '
        "sans-serif")
ICON = str(Path(__file__).resolve().parent / "assets" / "icon.svg")  # the browser tab's


class PageSpec(NamedTuple):
    """One page of the app, as plain data that the tests can read without running Streamlit."""

    file: str
    title: str
    icon: str
    url_path: str


# The app's navigation, in the order the sidebar shows it; the first is the home page, served at "/".
# url_path is the name Streamlit infers from the file, which AppTest.switch_page uses before a first run.
# The files are not in pages/: beside a pages/ folder, Streamlit runs a server's first request (and every
# AppTest run) through its older folder navigation, which opens a deep link without lab.py's sidebar.
PAGES = [
    PageSpec("app_pages/0_Home.py", "Home", ":material/home:", "Home"),
    PageSpec("app_pages/1_Train.py", "Train", ":material/model_training:", "Train"),
    PageSpec("app_pages/2_Draw.py", "Draw", ":material/draw:", "Draw"),
    PageSpec("app_pages/3_Compare.py", "Compare", ":material/leaderboard:", "Compare"),
    PageSpec("app_pages/4_Inside.py", "Inside", ":material/visibility:", "Inside"),
    PageSpec("app_pages/5_Generate.py", "Generate", ":material/auto_awesome:", "Generate"),
]


def choose_language() -> None:
    """Every run, before anything is drawn (lab.py): this tab's language, from the address (?lang=zh), else the
    choice made before in this session, else the server's or the browser's default; and back into the address,
    which a page switch empties."""
    asked = st.query_params.get(LANGUAGE_PARAM)
    if asked in i18n.LANGUAGES:
        st.session_state[LANGUAGE_KEY] = asked
    elif st.session_state.get(LANGUAGE_KEY) not in i18n.LANGUAGES:
        st.session_state[LANGUAGE_KEY] = i18n.default_language(st.context.locale)
    if asked != st.session_state[LANGUAGE_KEY]:  # unchanged, the address is not sent again
        st.query_params[LANGUAGE_PARAM] = st.session_state[LANGUAGE_KEY]


def language_switch() -> None:
    """The sidebar's 中文 / English: the language changes at once, for this tab, and its address says it."""
    st.radio(texts("sidebar")["language"], list(i18n.LANGUAGES), format_func=i18n.LANGUAGES.get, horizontal=True,
             key=LANGUAGE_KEY, on_change=lambda: st.query_params.update({LANGUAGE_PARAM: language()}))


def language() -> str:
    return st.session_state.get(LANGUAGE_KEY, i18n.DEFAULT)


def texts(section: str) -> Mapping:
    """A table of the catalogue (``locales/``) in this tab's language: a page's words."""
    return i18n.texts(section, language())


def say(text: object) -> str:
    """Something core said (a job's phase, a refused setting, an error) in this tab's language."""
    return i18n.in_language(text, language())


def page_title(page: PageSpec) -> str:
    return texts("pages")[page.url_path.lower()]


def classes(dataset: str) -> tuple[str, ...]:
    """A dataset's class names in this tab's language."""
    return tuple(i18n.translated("classes", name, language()) for name in data.get_spec(dataset).classes)


def plain(text: str) -> str:
    """A name typed by a student, shown as text inside Markdown: no images, links, headings or colours."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=])", r"\\\1", text)


@st.cache_resource
def job_manager() -> JobManager:
    """One queue of training jobs for the whole server, shared by every browser session."""
    return JobManager()


@st.cache_resource(max_entries=4)
def _ensemble(dataset: str, signature: tuple) -> Ensemble:
    return Ensemble.for_dataset(dataset)


def ensemble(dataset: str) -> Ensemble:
    """The trained models of a dataset that this student sees (``shown_owner``): every model is loaded
    once for the whole server and shared; reloaded when a run is saved."""
    signature = tuple((r.file, r.date) for r in checkpoints.find_models(dataset))
    return _ensemble(dataset, signature).seen_by(shown_owner())


EVERYONE_KEY = "everyone"  # the sidebar's switch: everyone's runs on the pages, not only one's own


def shown_owner() -> str | None:
    """Whose runs the pages show beside the shipped models: this student's, or everyone's (None)."""
    return None if st.session_state.get(EVERYONE_KEY) else session_id()


def models(dataset: str | None = None) -> list[checkpoints.ModelRecord]:
    """The trained models this student sees (the shipped ones and their own runs, or everyone's)."""
    return [r for r in checkpoints.find_models(dataset) if r.seen_by(shown_owner())]


@st.cache_resource(max_entries=8)
def generator(path: str, date: str) -> gan.Generator:
    """A generator loaded once per saved version (``date``) and shared by every session."""
    return gan.load_generator(path)


def answer_with_page_threads() -> None:
    """Every script run: torch's threads for what this page computes (``predict.PAGE_THREADS``). It is
    this thread's setting, and the one that threads started after it inherit (the later script runs)."""
    torch.set_num_threads(PAGE_THREADS)


@st.cache_data
def device_name() -> str:
    """The device the runs train on, as their workers describe it."""
    return describe_device(threads=worker_threads("cpu", job_manager().slots))


OWNER_PARAM = "student"  # the query parameter that carries who a tab belongs to
_OWNER_TOKEN = re.compile(r"[0-9a-f]{16}")


def session_id() -> str:
    """Who owns the jobs started from this browser tab: a random token kept in the tab's address
    (``?student=...``), so that a reload or a page switch keeps a student's runs and their Stop buttons.

    lab.py calls it on every run, since a page switch drops the address's query. 64 random bits: one
    student cannot guess another's token and stop their runs. A tab opened without one gets a new one.
    """
    token = st.query_params.get(OWNER_PARAM, "")
    if not _OWNER_TOKEN.fullmatch(token):
        token = st.session_state.get("session_id") or secrets.token_hex(8)
        st.query_params[OWNER_PARAM] = token
    st.session_state["session_id"] = token
    return token


KEPT = "kept:"  # the start of a widget key whose value outlives a switch to another page


def kept(key: str, default: object) -> str:
    """A widget key (give the widget no default of its own) whose value lasts the session: Streamlit forgets
    the values of widgets that a run does not draw, so a page switch reset the Train form to its recipe."""
    key = KEPT + key
    st.session_state.setdefault(key, default)
    return key


def keep_widgets() -> None:
    """Every run, before the page (lab.py): assigned by the script, kept widgets' values are not forgotten."""
    for key in [k for k in st.session_state if str(k).startswith(KEPT)]:
        st.session_state[key] = st.session_state[key]


def dataset() -> str:
    """The dataset chosen in the sidebar; lab.py draws its radio before it runs any page."""
    return st.session_state[DATASET_KEY]


_FIRST = -1  # class_choice's first option: not None, for a selectbox whose value is None shows "Choose an option"


def class_choice(label: str, classes: Sequence[str], *, first: str, key: str | None = None,
                 where: DeltaGenerator = st) -> int | None:
    """A selectbox of a dataset's classes after one other option (``first``: "any", "all classes", ...), which it
    returns as None. ``where`` is the container to draw it in."""
    choice = where.selectbox(label, [_FIRST, *range(len(classes))], key=key,
                             format_func=lambda c: first if c == _FIRST else classes[c])
    return None if choice == _FIRST else choice


def nouns(dataset: str) -> Mapping[str, str]:
    """What a dataset's pictures show, for the pages' sentences: "Draw a {thing}", "parts of {things}",
    "6,000 {pictures}"."""
    return texts("nouns")[dataset]


def big_answer(text: str) -> str:
    """A model's answer in large type (HTML), on one line that fits its column whatever its length: 'T-shirt/top'
    at a fixed 5rem broke into three lines and ran into the caption below."""
    # Bold type takes about 0.6 em a Latin character and 1 em a Chinese one: the size is the column's width (cqw)
    # over the text's width in em, at most 5rem.
    width = sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.64 for c in text)
    size = 100 / max(width, 0.64)
    return (f"<div style='container-type:inline-size'><div class='consensus' style='font-size:min(5rem,{size:.1f}cqw);"
            f"font-weight:700;line-height:1.25;white-space:nowrap'>{html.escape(text)}</div></div>")


STATUS_ICON = {"queued": ":material/hourglass_top:", "running": ":material/play_circle:",
               "stopping": ":material/stop_circle:", "done": ":material/check_circle:",
               "stopped": ":material/stop_circle:", "failed": ":material/error:",
               "interrupted": ":material/pause_circle:"}
TEACHER_KEY = "teacher_key"  # session state: the key this session's teacher typed


def teacher_key() -> str | None:
    """The teacher key this session entered, if it is the right one; None for a student."""
    key = st.session_state.get(TEACHER_KEY)
    return key if job_manager().is_teacher(key) else None


def teacher_sign_in() -> None:
    """The sidebar's teacher mode, offered only on a server started with $MNIST_LAB_TEACHER_KEY."""
    if not job_manager().teacher_key:
        return
    words = texts("teacher")
    if teacher_key():
        st.caption(words["on"])
        if st.button(words["leave"], icon=":material/logout:"):
            del st.session_state[TEACHER_KEY]
            st.rerun()
        return
    with st.expander(words["title"], icon=":material/school:"):
        with st.form("teacher", border=False, clear_on_submit=True):
            key = st.text_input(words["key"], type="password")
            if st.form_submit_button(words["title"]) and key:
                if job_manager().is_teacher(key):
                    st.session_state[TEACHER_KEY] = key
                    st.rerun()
                st.error(words["wrong"])


def submit_job(config: JobConfig, *, name: str, owner: str, shown_key: str) -> int | None:
    """Queue a run from a form and show it next; a bad setting or a limit is said on the page, nothing
    is queued (None). The toast says how long the run should take here."""
    manager, words = job_manager(), texts("jobs")
    try:
        job_id = manager.submit(config, name=name, owner=owner, teacher_key=teacher_key())
    except ValueError as error:
        st.error(say(error))
        return None
    st.session_state[shown_key] = job_id
    estimate = manager.estimate(config)
    st.toast(words["started"].format(name=plain(manager.snapshot(job_id).name))
             + (words["about"].format(time=clock(estimate.seconds)) if estimate else ""))
    return job_id


def pick_job(jobs: list[JobSnapshot], *, owner: str, shown_key: str) -> JobSnapshot:
    """The run to show, newest first in the list: the one shown before, else this session's latest,
    else the latest running, else the latest queued, else the latest."""
    ids = [j.id for j in reversed(jobs)]
    by_id = {j.id: j for j in jobs}
    preferred = st.session_state.get(shown_key)
    if preferred not in by_id:
        mine = [j.id for j in jobs if j.owner == owner]
        running = [j.id for j in jobs if j.status in ("running", "stopping")]
        queued = [j.id for j in jobs if j.active]
        preferred = (mine or running or queued or [jobs[-1].id])[-1]
    words, status = texts("jobs"), texts("status")
    shown = st.selectbox(words["show"], ids, index=ids.index(preferred), format_func=lambda i: words["option"].format(
        name=by_id[i].name, status=status[by_id[i].status]))
    st.session_state[shown_key] = shown
    return by_id[shown]


def job_status(job: JobSnapshot, *, owner: str) -> JobSnapshot:
    """A run's title and status line, its stop or resume button (for the student who started it, and
    the teacher), its place in the queue, its progress bar and its failure; returns the snapshot as it
    is after a stop."""
    manager, key, words = job_manager(), teacher_key(), texts("jobs")
    st.subheader(f"{STATUS_ICON[job.status]} {plain(job.name)} — {say(job.title)}")
    st.caption(f"{texts('status')[job.status]} · {say(job.phase)}" + (f" · {say(job.device)}" if job.device else ""))
    in_charge = job.owner == owner or key is not None
    if in_charge and job.active and st.button(words["stop"], key=f"stop-{job.id}", icon=":material/stop:"):
        manager.stop(job.id, owner=owner, teacher_key=key)
        job = manager.snapshot(job.id)
    if job.status == "interrupted":
        st.warning(words["interrupted"])
        if in_charge and st.button(words["resume"], key=f"resume-{job.id}", help=words["resume_help"],
                                   icon=":material/resume:"):
            manager.resume(job.id, owner=owner, teacher_key=key)
            st.rerun()
    if job.status == "queued":
        st.info(words["queued"].format(position=job.position))
    if job.last_step and job.active:
        step = job.last_step
        st.progress(job.progress, text=words["progress"].format(
            epoch=step["epoch"], epochs=step["epochs"], step=step["step"], steps=step["steps_per_epoch"],
            speed=job.samples_per_s, eta=clock(job.eta_s)))
    if job.status == "failed":
        st.error(words["failed"].format(error=say(job.error)))
    return job


def architecture_card(arch: str) -> None:
    """An architecture's card: its paper, its idea, and its size here against the original's."""
    card, words = get_card(arch), texts("card")
    said = i18n.card_words(card, language())
    params, macs = architecture_size(arch)
    st.subheader(f"{card.title} ({card.year})")
    st.caption(say(card.paper))  # as published (a built network's says where it was built)
    st.write(said.summary)
    st.markdown("\n".join(f"- {idea}" for idea in said.ideas))
    left, right = st.columns(2)
    left.metric(words["params"], f"{params:,}")
    right.metric(words["macs"], f"{macs / 1e6:.2f} M")
    st.caption(words["original"].format(params=said.paper_params))


# Seconds between updates of a page that watches a run. Each update re-renders the page's live part in every
# watching browser: with 6 Train tabs on a run, every 2 s took Chromium 0.78 of a core and the server 0.062 s
# a second, every 5 s 0.51 and 0.029 (on 2 cores, where the browsers' share is what the run loses).
LIVE_EVERY = 5.0
CHART_POINTS = 400  # per curve: what a chart sent to every watching tab at every update may hold
# Seconds a running job's curves stay as they are. Between two redraws every update sends each watching tab
# the same chart, which the browser does not draw again: drawing the curves was half of what a watching
# tab cost its browser (measured: 6 Train tabs took 1.08 CPU cores of Chromium, 0.68 with the curves
# redrawn every 10 s). The progress bar above them still moves every LIVE_EVERY seconds.
CHART_EVERY = 10.0


def thinned(points: Sequence[dict]) -> list[dict]:
    """At most CHART_POINTS of a run's logged points, evenly spaced, the latest always kept: a live chart
    whose cost to draw, send and render does not grow as the run trains (a long run logs thousands)."""
    every = max(1, math.ceil(len(points) / CHART_POINTS))
    return list(points[::-1][::every][::-1])


FEW_POINTS = 30  # a curve of fewer points shows each one: a run's first points are a line too short to see


def _line_mode(points: Sequence) -> str:
    return "lines+markers" if len(points) < FEW_POINTS else "lines"


def _chart_key(job: JobSnapshot) -> tuple:
    """Which charts of a job to draw: while it runs, those of the CHART_EVERY-second interval of now
    (every tab watching it then gets them, built once for the whole server); once finished, those of
    its final curves. The job is its id and creation time: ids start again in another job store."""
    if job.active:
        return job.id, job.created, "running", int(time.time() // CHART_EVERY)
    return job.id, job.created, job.status, len(job.steps), len(job.epochs)


def loss_and_accuracy_charts(job: JobSnapshot) -> tuple[go.Figure, go.Figure]:
    """Training curves per logging interval, validation per epoch, on one step axis (see ``_chart_key``)."""
    return _loss_and_accuracy_charts(_chart_key(job), language(), job)


def gan_loss_chart(job: JobSnapshot) -> go.Figure:
    """D's and G's losses per logging interval; the game is healthy while neither runs away."""
    return _gan_loss_chart(_chart_key(job), language(), job)


# The figures are shared, read-only, by every session: st.plotly_chart only serialises them.
@st.cache_resource(max_entries=32)
def _loss_and_accuracy_charts(key: tuple, language: str, _job: JobSnapshot) -> tuple[go.Figure, go.Figure]:
    words = i18n.texts("charts", language)
    points = thinned(_job.steps)
    steps = [p["global_step"] for p in points]
    per_epoch = _job.last_step["steps_per_epoch"] if _job.last_step else 1
    epoch_steps = [e["epoch"] * per_epoch for e in _job.epochs if e["val_loss"] is not None]
    figures = []
    for metric in ("loss", "accuracy"):
        figure = go.Figure()
        figure.add_scatter(x=steps, y=[p[metric] for p in points], name=words["train"], mode=_line_mode(points))
        if _job.config.val_split:
            val = [e[f"val_{metric}"] for e in _job.epochs if e["val_loss"] is not None]
            figure.add_scatter(x=epoch_steps, y=val, name=words["validation"], mode="lines+markers")
        else:
            figure.add_annotation(text=words["no_validation"], showarrow=False, xref="paper", yref="paper",
                                  x=1, y=1, xanchor="right", yanchor="bottom")
        figure.update_layout(title=words[metric], xaxis_title=words["step"], height=300, font_family=FONT,
                             margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
        figures.append(figure)
    return figures[0], figures[1]


# Where a point's label may go (plotly's textposition), and the corner of the label's box as a share of its
# width and height, measured from the point out past its marker (x to the right, y downwards).
_LABEL_PLACES = {"top center": (-0.5, -1), "bottom center": (-0.5, 0), "middle right": (0, -0.5),
                 "middle left": (-1, -0.5), "top right": (0, -1), "top left": (-1, -1), "bottom right": (0, 0),
                 "bottom left": (-1, 0)}
_LABEL_FONT_PX = 12  # plotly's default; a character takes about 0.55 of it


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def unbroken(name: str) -> str:
    """A class name that a narrow caption does not break inside ("T-" / "shirt/top" under a picture of Compare's)."""
    return name.replace("-", "\u2011").replace("/", "/\u2060").replace(" ", "\u00a0")


def label_box(x: float, y: float, diameter: float, label: str, place: str) -> tuple[float, float, float, float]:
    """The pixels (left, top, right, bottom) a point's label covers at a textposition, y downwards."""
    radius = diameter / 2 + 1
    share_x, share_y = _LABEL_PLACES[place]
    w, h = 0.55 * _LABEL_FONT_PX * len(label) + 4, _LABEL_FONT_PX + 4
    dx = 0 if share_x == -0.5 else (radius if share_x == 0 else -radius)
    dy = 0 if share_y == -0.5 else (radius if share_y == 0 else -radius)
    left, top = x + dx + share_x * w, y + dy + share_y * h
    return left, top, left + w, top + h


def label_places(x: Sequence[float], y: Sequence[float], labels: Sequence[str], diameters: Sequence[float], *,
                 width: float, height: float) -> list[str]:
    """A textposition for each point's label, chosen so that labels cover the fewest other labels and markers.

    ``x`` and ``y`` are the points in pixels of a ``width`` x ``height`` plot (y downwards). Greedy, most crowded
    point first: on Compare's charts every label sat on top of its point, and zfnet, mobilenet and vgg11 were one
    blot of text at 1280 pixels wide.
    """
    radius = [d / 2 + 1 for d in diameters]
    markers = [(px - r, py - r, px + r, py + r) for px, py, r in zip(x, y, radius, strict=True)]
    points = list(zip(x, y, strict=True))
    crowd = [sum(abs(px - qx) < 80 and abs(py - qy) < 30 for qx, qy in points) for px, py in points]
    boxes: dict[int, tuple[float, float, float, float]] = {}
    places = [""] * len(labels)

    def cost(i: int, box: tuple[float, float, float, float]) -> float:
        outside = (box[2] - box[0]) * (box[3] - box[1]) - _overlap(box, (0, 0, width, height))
        # Text over text is unreadable, text over a translucent bubble only harder to read.
        padded = (box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3)  # a gap between labels, for the model's error
        return (6 * sum(_overlap(padded, other) for j, other in boxes.items() if j != i) + 2 * outside
                + sum(_overlap(box, m) for j, m in enumerate(markers) if j != i))

    # Greedy, most crowded first; then each label again against all the others, as long as one moves: the
    # first pass cannot see labels placed after it (googlenet's and mobilenet's overlapped on MNIST).
    order = sorted(range(len(labels)), key=lambda i: -crowd[i])
    for sweep in range(4):
        moved = False
        for i in order:
            options = {place: label_box(x[i], y[i], diameters[i], labels[i], place) for place in _LABEL_PLACES}
            best = min(options, key=lambda place: cost(i, options[place]))
            if places[i] and cost(i, options[best]) >= cost(i, options[places[i]]):
                continue  # a tie keeps the place it has
            moved = moved or bool(places[i])
            places[i], boxes[i] = best, options[best]
        if sweep and not moved:
            break
    return places


ACCURACY_CHART = {"width": 318, "height": 275}  # the plot area of one of Compare's two charts at 1280 pixels, measured
BUBBLE_PX = 28  # the largest bubble's diameter: the largest model's


def accuracy_chart(x: Sequence[float], accuracy: Sequence[float], names: Sequence[str], *, params: Sequence[int],
                   devices: Sequence[str], bubbles: bool, title: str, x_title: str, y_title: str,
                   hover: str) -> go.Figure:
    """Test accuracy against a cost on a log axis, each model a labelled point (a bubble as large as its number
    of parameters), the labels placed where they cover the least (``label_places``)."""
    diameters = [max(6.0, BUBBLE_PX * math.sqrt(p / max(params))) if bubbles else 8.0 for p in params]
    low, high = math.log10(min(x)), math.log10(max(x))
    x_range = [low - 0.12 * (high - low or 1), high + 0.12 * (high - low or 1)]
    bottom, top = min(accuracy), max(accuracy)
    y_range = [bottom - 0.12 * (top - bottom or 1), top + 0.15 * (top - bottom or 1)]
    width, height = ACCURACY_CHART["width"], ACCURACY_CHART["height"]
    px = [(math.log10(v) - x_range[0]) / (x_range[1] - x_range[0]) * width for v in x]
    py = [(y_range[1] - v) / (y_range[1] - y_range[0]) * height for v in accuracy]
    figure = go.Figure(go.Scatter(
        x=list(x), y=list(accuracy), text=list(names), mode="markers", showlegend=False,
        marker=dict(size=diameters, opacity=0.55 if bubbles else 1.0, line=dict(width=1, color="white")),
        customdata=[[p, d] for p, d in zip(params, devices, strict=True)], hovertemplate=hover,
    ))
    # The labels a trace of their own, drawn after every marker: a later bubble hid the label of an earlier point.
    # Its markers are invisible copies, which plotly sets the labels off by.
    figure.add_scatter(x=list(x), y=list(accuracy), text=list(names), mode="markers+text", cliponaxis=False,
                       textposition=label_places(px, py, names, diameters, width=width, height=height),
                       marker=dict(size=diameters, opacity=0), hoverinfo="skip", showlegend=False)
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=380, font_family=FONT,
                         margin=dict(l=10, r=10, t=40, b=10))
    figure.update_xaxes(type="log", range=x_range)
    figure.update_yaxes(range=y_range)
    return figure


def confusion_chart(confusion: list[list[int]], classes: tuple[str, ...]) -> go.Figure:
    figure = go.Figure(go.Heatmap(z=confusion, x=list(classes), y=list(classes), colorscale="Blues",
                                  text=confusion, texttemplate="%{text}", showscale=False))
    words = texts("charts")
    figure.update_layout(title=words["confusion"], xaxis_title=words["predicted"], yaxis_title=words["true"],
                         font_family=FONT,
                         xaxis_type="category", yaxis_type="category", yaxis_autorange="reversed",
                         height=480, margin=dict(l=10, r=10, t=40, b=10))
    return figure


@st.cache_resource(max_entries=32)
def _gan_loss_chart(key: tuple, language: str, _job: JobSnapshot) -> go.Figure:
    words = i18n.texts("charts", language)
    points = thinned(_job.steps)
    steps = [p["global_step"] for p in points]
    figure = go.Figure()
    figure.add_scatter(x=steps, y=[p["d_loss"] for p in points], name=words["d_loss"], mode=_line_mode(points))
    figure.add_scatter(x=steps, y=[p["g_loss"] for p in points], name=words["g_loss"], mode=_line_mode(points))
    figure.update_layout(title=words["losses"], xaxis_title=words["step"], height=330, font_family=FONT,
                         margin=dict(l=10, r=10, t=40, b=10),
                         legend=dict(orientation="h", y=-0.25))
    return figure


def gan_scores_chart(scores: dict, classes: tuple[str, ...], *, agreement_target: bool = True) -> go.Figure:
    """Per class: label agreement (beside the judge's own accuracy on real images) and diversity against
    real images, with the lines they must clear."""
    figure, words = go.Figure(), texts("charts")
    figure.add_bar(x=list(classes), y=scores["agreement_per_class"], name=words["agreement"])
    figure.add_bar(x=list(classes), y=scores["real_agreement_per_class"], name=words["judge_real"],
                   marker_opacity=0.45)
    figure.add_bar(x=list(classes), y=[100 * r for r in scores["diversity_ratio"]], name=words["diversity"])
    if agreement_target:
        figure.add_hline(y=97, line_dash="dot", annotation_text=words["agreement_target"].format(value=97),
                         annotation_position="top left")
    figure.add_hline(y=80, line_dash="dot", annotation_text=words["diversity_target"].format(value=80),
                     annotation_position="bottom left")
    figure.update_layout(title=words["scores"], barmode="group", xaxis_type="category", height=380, font_family=FONT,
                         yaxis_title="%", margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
    return figure
