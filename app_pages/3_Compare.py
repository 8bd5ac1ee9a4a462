"""Compare: every trained model side by side, on numbers measured on this machine."""

from collections.abc import Callable
from dataclasses import asdict
from typing import TypeVar

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from core import bench, checkpoints, cost, data, metrics, paper, zoo
from core.models import get_card, get_model, list_models

TEXT = ui.texts("compare")
GALLERY_SIZE = 20  # five rows of four, about as tall as the confusion matrix beside them
THUMBNAIL = 80  # pixels: "T-shirt/top" fits under a picture on one line
CURVES = 6  # shown at first: more lines than this are hard to tell apart
T = TypeVar("T")


def with_progress(text: str, compute: Callable[[zoo.Progress], T]) -> T:
    """Run ``compute(progress)``, showing a progress bar while core reports steps."""
    slot = st.empty()
    result = compute(lambda done, total, what: slot.progress(done / max(total, 1), text=f"{text} {ui.say(what)}"))
    slot.empty()
    return result


dataset = ui.dataset()
spec = data.get_spec(dataset)
classes = ui.classes(dataset)
st.title(TEXT["title"])
st.write(TEXT["intro"])

def time_architectures(*, again: bool) -> None:
    architectures = tuple(dict.fromkeys(zoo.architecture_of(r) for r in records))
    if ui.submit_job(zoo.TimingJob(architectures, refresh=again), name=TEXT["timing_name"], owner=ui.session_id(),
                     shown_key="shown_timing") is not None:
        st.rerun()


def timing() -> None:
    """The speed columns: measured by a queued job (on a first visit, or asked for), never by the page."""
    jobs = [j for j in ui.job_manager().snapshots(history=False) if j.kind == "timing"]
    last = jobs[-1] if jobs else None
    untimed = sum(row.cpu_latency_ms is None for row in rows)
    if last is None and untimed:
        time_architectures(again=False)  # the first visit on this machine
    if last is not None and last.active:
        timing_progress(last.id)
        return
    if last is not None and last.status == "failed":
        st.error(TEXT["timing_failed"].format(error=ui.say(last.error)))
    label = TEXT["time_missing"].format(n=untimed) if untimed else TEXT["refresh"]
    if st.button(label, help=TEXT["refresh_help"], icon=":material/timer:"):
        time_architectures(again=not untimed)


@st.fragment(run_every=2.0)
def timing_progress(job_id: int) -> None:
    job = ui.job_manager().snapshot(job_id)
    if not job.active:
        st.rerun()  # the figures are in: the whole table again
    where = TEXT["timing_queued"].format(position=job.position) if job.position else ui.say(job.phase)
    st.progress(job.progress, text=TEXT["timing"].format(what=where))


records = ui.models()
if not records:
    st.info(TEXT["no_models"])
    st.stop()
rows = zoo.zoo_table(records, measure=False)  # the speeds cached; a queued job measures the rest
# Every dataset's models go in the CSV; the page shows the sidebar's.
here = [(record, row) for record, row in zip(records, rows, strict=True) if record.dataset == dataset]

# --- the tables: size, accuracy and training; then speed on this machine ---
st.subheader(TEXT["table"].format(dataset=spec.title))
if not here:
    st.info(TEXT["no_models_here"].format(dataset=spec.title))
    st.stop()
frame = pd.DataFrame([asdict(row) for _, row in here])
columns = TEXT["columns"]
st.dataframe(
    frame[list(columns)].rename(columns=columns), hide_index=True, width="stretch", height="content",
    column_config={columns["params"]: st.column_config.NumberColumn(format="compact"),
                   columns["macs"]: st.column_config.NumberColumn(format="compact")},
)
everything = pd.DataFrame([asdict(row) for row in rows])
st.download_button(TEXT["csv"], everything.to_csv(index=False), file_name="mnist-lab-zoo.csv", mime="text/csv",
                   icon=":material/download:", help=TEXT["csv_help"])
st.caption(TEXT["table_caption"])

speed, report = st.columns([3, 2], gap="large")
with speed:
    st.markdown(f"**{TEXT['speed']}**")
    timing()
    speeds = frame[["name", *TEXT["speed_columns"]]].dropna(axis="columns", how="all")  # no GPU: no GPU columns
    if len(speeds.columns) > 1:  # anything timed yet
        speed_columns = {"name": columns["name"], **TEXT["speed_columns"]}
        st.dataframe(speeds.rename(columns=speed_columns), hide_index=True, width="stretch", height="content",
                     column_config={speed_columns[key]: st.column_config.NumberColumn(format="localized")
                                    for key in ("cpu_images_per_s", "gpu_images_per_s") if key in speeds})
        machines = TEXT["and"].join(ui.say(zoo.timing_machine(device)) for device in bench.speed_devices())
        st.caption(TEXT["speed_caption"].format(machines=machines))
with report:
    st.markdown(f"**{TEXT['report']}**")
    beside = paper.beside_report(dataset)  # the report's figures, and bench --paper's here
    measured = [ours for _, ours in beside if ours]
    columns_here = TEXT["paper_columns"]

    def figures(figure: zoo.ReferenceFigure, ours: dict | None) -> dict:
        row = {TEXT["report_columns"][key]: getattr(figure, key) for key in TEXT["report_columns"]}
        if measured:
            row |= {columns_here["seconds"]: ours["seconds"] if ours else None,
                    columns_here["accuracy"]: ours["test_accuracy"] if ours else None}
        return row

    st.dataframe([figures(figure, ours) for figure, ours in beside], hide_index=True)
    st.caption(TEXT["report_caption"].format(setting=ui.say(zoo.LAB_REPORT_SETTING)))
    if measured:
        st.caption(TEXT["paper_caption"].format(runs="; ".join(
            TEXT["paper_run"].format(device=ui.say(device), epochs=epochs, batch=batch, ranks=ranks)
            for device, epochs, batch, ranks in paper.settings(measured))))

# --- pictures ---
st.header(TEXT["pictures"].format(dataset=spec.title))
names = [record.label for record, _ in here]
here_rows = [row for _, row in here]
hover = (f"%{{text}}: %{{y:.2f}}%, %{{x:,.3s}}<br>%{{customdata[0]:,}} {TEXT['params_hover']}, "
         f"{TEXT['trained_hover']} %{{customdata[1]}}<extra></extra>")
left, right = st.columns(2)
for column, x, bubbles, title, axis in [
    (left, [row.macs for row in here_rows], True, TEXT["acc_macs"], TEXT["macs_axis"]),
    (right, [row.train_seconds for row in here_rows], False, TEXT["acc_time"], TEXT["time_axis"]),
]:
    column.plotly_chart(ui.accuracy_chart(
        x, [row.test_accuracy for row in here_rows], names, params=[row.params for row in here_rows],
        devices=[row.train_device for row in here_rows], bubbles=bubbles, title=title, x_title=axis,
        y_title=TEXT["accuracy_axis"], hover=hover))

st.subheader(TEXT["curves"])
with_history = {record.label: record for record, _ in here if record.history}
curve_column, metric_column = st.columns([3, 1])
curve_names = curve_column.multiselect(TEXT["curve_models"], list(with_history),
                                       default=[n for n, r in with_history.items() if r.shipped][:CURVES])
metric = metric_column.radio(TEXT["curve_metric"], list(TEXT["metrics"]), format_func=TEXT["metrics"].get)
curves = go.Figure()
for name in curve_names:
    epochs = [e for e in with_history[name].history if e.get(metric) is not None]
    curves.add_scatter(x=[e["epoch"] for e in epochs], y=[e[metric] for e in epochs], name=name,
                       mode="lines+markers")
curves.update_layout(title=TEXT["metrics"][metric], xaxis_title=TEXT["epoch"], height=380, font_family=ui.FONT,
                     margin=dict(l=10, r=10, t=40, b=10))
st.plotly_chart(curves)

# --- the test set: per class, the hardest images, one model's mistakes ---
def on_the_test_set(by_name: dict[str, checkpoints.ModelRecord], test: data.Split) -> str | None:
    """The chosen models' answers on the test set; returns the architecture of the one looked at closely."""
    models_key = f"compare_models_{dataset}"
    st.session_state[models_key] = [n for n in st.session_state.get(models_key, list(by_name)) if n in by_name]
    picked = st.multiselect(TEXT["test_models"], list(by_name), key=models_key, help=TEXT["test_models_help"])
    if not picked:
        st.info(TEXT["none_chosen"])
        return None
    answers, problems = with_progress(TEXT["predicting"], lambda progress: zoo.zoo_predictions(
        [by_name[name] for name in picked], progress=progress))
    for name, problem in problems.items():
        st.warning(TEXT["left_out"].format(name=name, problem=ui.say(problem)))
    answered = {name: answers[by_name[name].path] for name in picked if by_name[name].path in answers}
    if not answered:
        return None
    images, labels = test.images.numpy(), test.labels

    per_class = [metrics.per_class_accuracy(a.predicted, labels, len(classes)).tolist()
                 for a in answered.values()]
    heatmap = go.Figure(go.Heatmap(z=per_class, x=list(classes), y=list(answered), colorscale="RdYlGn",
                                   text=[[f"{v:.1f}" for v in row] for row in per_class], texttemplate="%{text}"))
    heatmap.update_layout(title=TEXT["per_class"], xaxis_title=TEXT["true_class_axis"], xaxis_type="category",
                          yaxis_type="category", yaxis_autorange="reversed", height=120 + 28 * len(answered),
                          font_family=ui.FONT, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(heatmap)

    hardest = metrics.hardest_examples([a.predicted for a in answered.values()], labels, count=24)
    if len(answered) > 1 and hardest:
        st.subheader(TEXT["hardest"][dataset])
        st.caption(TEXT["hardest_about"].format(n=len(answered)))
        st.image([images[h.index] for h in hardest], width=THUMBNAIL, caption=[
            TEXT["hardest_caption"].format(label=ui.unbroken(classes[h.label]), wrong=h.wrong, n=len(answered),
                                           answer=ui.unbroken(classes[h.answer])) for h in hardest])

    st.subheader(TEXT["up_close"])
    name = st.selectbox(TEXT["model"], list(answered))
    chosen = answered[name]
    confusion, gallery = st.columns(2, gap="large")  # ten class names under a narrower matrix crowd it
    confusion.plotly_chart(ui.confusion_chart(
        metrics.confusion_matrix(chosen.predicted, labels, len(classes)).tolist(), classes))
    with gallery:
        st.markdown(f"**{TEXT['mistakes']}**")
        true_column, answer_column = st.columns(2)
        true_class = ui.class_choice(TEXT["true"], classes, first=TEXT["any"], where=true_column)
        answer_class = ui.class_choice(TEXT["answer"], classes, first=TEXT["any"], where=answer_column)
        wrong = metrics.mistakes(chosen, labels, true_class=true_class, predicted_class=answer_class).tolist()
        if not wrong:
            st.info(TEXT["no_mistakes"])
        else:
            shown = wrong[:GALLERY_SIZE]
            st.caption(TEXT["mistake_count"].format(
                n=len(wrong), total=len(labels),
                shown=TEXT["shown"].format(shown=len(shown)) if len(shown) < len(wrong) else ""))
            st.image([images[i] for i in shown], width=THUMBNAIL, caption=[
                TEXT["mistake_caption"].format(label=ui.unbroken(classes[labels[i]]),
                                               answer=ui.unbroken(classes[chosen.predicted[i]]),
                                               confidence=float(chosen.confidence[i])) for i in shown])
    return by_name[name].arch


st.header(TEXT["test_set"])
try:
    test_split = data.load(dataset, train=False)
except data.DatasetNotFound as error:  # offline at first start: everything else on the page needs no data
    st.warning(TEXT["no_data"].format(error=error))
    looked_at = None
else:
    looked_at = on_the_test_set({record.label: record for record, _ in here}, test_split)

# --- inside one architecture ---
st.header(TEXT["layers"])
arch_column, depth_column = st.columns([3, 1])
architectures = list(dict.fromkeys([*list_models(), *(record.arch for record, _ in here)]))  # built ones too
arch = arch_column.selectbox(TEXT["arch"], architectures, index=architectures.index(looked_at or here[0][0].arch),
                             format_func=lambda a: get_card(a).title)
model = get_model(arch, num_classes=len(classes))
deepest = max(n.count(".") + 1 for n, _ in model.named_modules() if n)
depth = depth_column.slider(TEXT["depth"], 1, deepest, min(2, deepest), help=TEXT["depth_help"])
layers = cost.layer_summary(model, depth=depth)
layer_columns = TEXT["layer_columns"]
st.dataframe(
    [{layer_columns["name"]: layer.name, layer_columns["kind"]: layer.kind,
      layer_columns["output_shape"]: " x ".join(map(str, layer.output_shape)) if layer.output_shape
      else TEXT["training_only"],
      layer_columns["params"]: layer.params, layer_columns["macs"]: layer.macs} for layer in layers],
    hide_index=True, width="stretch",
    column_config={layer_columns[key]: st.column_config.NumberColumn(format="localized") for key in ("params", "macs")},
)
params, macs = cost.architecture_size(arch, num_classes=len(classes))
st.caption(TEXT["layers_caption"].format(params=params, macs=macs))
