"""What every page of the app shares: page set-up, the sidebar, server-wide resources, charts.

Pages stay thin: they lay out widgets and call ``core``; this module holds the Streamlit glue that
more than one page needs. Nothing here trains, predicts or measures.
"""

from __future__ import annotations

import uuid

import plotly.graph_objects as go
import streamlit as st

from core import checkpoints, data
from core.jobs import JobManager, JobSnapshot
from core.measure import architecture_size
from core.models import get_card
from core.predict import Ensemble
from core.training import describe_device

DATASET_KEY = "dataset"
# (script, label, icon): the app's navigation, in the order it is shown.
PAGES = [
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Train.py", "Train", ":material/model_training:"),
    ("pages/2_Draw.py", "Draw", ":material/draw:"),
    ("pages/3_Compare.py", "Compare", ":material/leaderboard:"),
    ("pages/4_Inside.py", "Inside", ":material/visibility:"),
]


@st.cache_resource
def job_manager() -> JobManager:
    """One queue of training jobs for the whole server, shared by every browser session."""
    return JobManager()


@st.cache_resource(max_entries=4)
def _ensemble(dataset: str, signature: tuple) -> Ensemble:
    return Ensemble.for_dataset(dataset)


def ensemble(dataset: str) -> Ensemble:
    """Every trained model of a dataset, loaded once and shared; reloaded when a run is saved."""
    signature = tuple((r.file, r.date) for r in checkpoints.find_models(dataset))
    return _ensemble(dataset, signature)


@st.cache_data
def device_name() -> str:
    return describe_device()


def session_id() -> str:
    """Who owns the jobs started from this browser tab."""
    return st.session_state.setdefault("session_id", uuid.uuid4().hex[:8])


def page_setup(title: str) -> str:
    """Page config and the sidebar every page shows; returns the chosen dataset."""
    st.set_page_config(page_title=f"{title} · MNIST CNN Lab", page_icon=":material/neurology:", layout="wide")
    return sidebar()


def sidebar() -> str:
    with st.sidebar:
        for script, label, icon in PAGES:
            st.page_link(script, label=label, icon=icon)
        st.divider()
        st.caption(f":material/memory: {device_name()}")
        dataset = st.radio(
            "Dataset", list(data.DATASETS), format_func=lambda name: data.DATASETS[name].title,
            key=DATASET_KEY, horizontal=True,
        )
        counts = {name: len(checkpoints.find_models(name)) for name in data.DATASETS}
        st.caption(" · ".join(f"{data.DATASETS[n].title}: {c} trained models" for n, c in counts.items()))
        jobs = [j for j in job_manager().snapshots() if j.active]
        if jobs:
            running = sum(j.status in ("running", "stopping") for j in jobs)
            st.caption(f":material/model_training: training: {running} running, {len(jobs) - running} queued")
    return dataset


def architecture_card(arch: str) -> None:
    card = get_card(arch)
    params, macs = architecture_size(arch)
    st.subheader(f"{card.title} ({card.year})")
    st.caption(card.paper)
    st.write(card.summary)
    st.markdown("\n".join(f"- {idea}" for idea in card.ideas))
    left, right = st.columns(2)
    left.metric("Parameters here", f"{params:,}")
    right.metric("MACs per image", f"{macs / 1e6:.2f} M")
    st.caption(f"The original: {card.paper_params}.")


def loss_and_accuracy_charts(job: JobSnapshot) -> tuple[go.Figure, go.Figure]:
    """Training curves per logging interval, validation per epoch, on one step axis."""
    steps = [p["global_step"] for p in job.steps]
    per_epoch = job.last_step["steps_per_epoch"] if job.last_step else 1
    epoch_steps = [e["epoch"] * per_epoch for e in job.epochs if e["val_loss"] is not None]
    figures = []
    for metric, title in (("loss", "Loss"), ("accuracy", "Accuracy (%)")):
        figure = go.Figure()
        figure.add_scatter(x=steps, y=[p[metric] for p in job.steps], name="train", mode="lines")
        val = [e[f"val_{metric}"] for e in job.epochs if e["val_loss"] is not None]
        figure.add_scatter(x=epoch_steps, y=val, name="validation", mode="lines+markers")
        figure.update_layout(title=title, xaxis_title="step", height=300, margin=dict(l=10, r=10, t=40, b=10),
                             legend=dict(orientation="h", y=-0.25))
        figures.append(figure)
    return figures[0], figures[1]


def confusion_chart(confusion: list[list[int]], classes: tuple[str, ...]) -> go.Figure:
    figure = go.Figure(go.Heatmap(z=confusion, x=list(classes), y=list(classes), colorscale="Blues",
                                  text=confusion, texttemplate="%{text}", showscale=False))
    figure.update_layout(title="Confusion matrix (test set)", xaxis_title="predicted", yaxis_title="true",
                         xaxis_type="category", yaxis_type="category", yaxis_autorange="reversed",
                         height=420, margin=dict(l=10, r=10, t=40, b=10))
    return figure
