"""Inside: what a network sees — feature maps, filters, saliency, Grad-CAM and occlusion, for any model."""

import hashlib
import random
import time

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui
from core import data, explain, preprocess

TEXT = ui.texts("inside")
VIEWS = ("maps", "filters", "saliency", "occlusion", "channel")  # TEXT["views"] names them
TOP_POOL = 2000  # test images searched for a channel's favourites: enough to find good ones, under a second
MAX_FILTERS = 64  # an MLP's first layer has 1024 whole-image templates: show the first ones

dataset = ui.dataset()
nouns = ui.nouns(dataset)
spec = data.get_spec(dataset)
classes = ui.classes(dataset)
ensemble = ui.ensemble(dataset)
models = {record.label: (record, model) for record, model in ensemble.models}  # a run never hides a shipped model


# The views' results are cached for the whole server, per model (its file and date), input (a hash of its
# bytes) and settings: thirty students on one test image and one shipped model compute each view once.
@st.cache_data(max_entries=256, show_spinner=False)
def saliency_map(_model, model_key: tuple, image_key: str, target: int, _x) -> np.ndarray:
    return explain.saliency_map(_model, _x, target).numpy()


@st.cache_data(max_entries=256, show_spinner=False)
def grad_cam(_model, model_key: tuple, image_key: str, target: int, _x) -> tuple[np.ndarray, str]:
    cam, stage = explain.grad_cam(_model, _x, target)
    return cam.cpu().numpy(), stage.name


@st.cache_data(max_entries=256, show_spinner=False)
def occlusion(_model, model_key: tuple, image_key: str, target: int, patch: int, stride: int, _x) -> np.ndarray:
    return explain.occlusion(_model, _x, target, patch=patch, stride=stride).numpy()


@st.cache_data(max_entries=64, show_spinner=False)
def grown_pattern(_model, model_key: tuple, stage: str, channel: int, dataset: str) -> np.ndarray:
    return explain.maximise_channel(_model, stage, channel, dataset=dataset).numpy()


@st.cache_data(max_entries=64, show_spinner=False)
def favourites(_model, model_key: tuple, stage: str, channel: int, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    images = data.normalize(data.load(dataset, train=False).images[:TOP_POOL], dataset)
    indices, values = explain.top_images(_model, stage, channel, images)
    return indices.numpy(), values.numpy()


def picture(z: np.ndarray, *, colorscale: str = "gray", zmin: float | None = None, zmax: float | None = None,
            customdata: np.ndarray | None = None, hovertemplate: str | None = None, height: int = 220,
            under: np.ndarray | None = None, opacity: float = 1.0) -> go.Figure:
    """An image as a heatmap (hover shows the values), optionally laid over a grey picture."""
    figure = go.Figure()
    if under is not None:
        figure.add_heatmap(z=under, colorscale="gray", showscale=False, hoverinfo="skip")
    figure.add_heatmap(z=z, colorscale=colorscale, zmin=zmin, zmax=zmax, showscale=False, opacity=opacity,
                       customdata=customdata, hovertemplate=hovertemplate, hoverongaps=False)
    figure.update_layout(height=height, margin=dict(l=0, r=0, t=0, b=0), plot_bgcolor="rgba(0,0,0,0)",
                         xaxis=dict(visible=False, constrain="domain"),
                         yaxis=dict(visible=False, autorange="reversed", scaleanchor="x"))
    return figure


def tiles(maps, *, symmetric: bool = False) -> go.Figure:
    """C maps (C x H x W) as one mosaic; hover names the channel and its mean activation.

    ``symmetric`` puts zero at mid-grey, for weights that are as often negative as positive.
    """
    grid, channel = explain.mosaic(maps)
    means = maps.mean(dim=(1, 2)).numpy()
    customdata = np.stack([np.where(channel >= 0, channel, np.nan), np.where(channel >= 0, means[channel], np.nan)],
                          axis=-1)
    limit = float(np.nanmax(np.abs(grid))) or 1.0
    template = (f"{TEXT['hover_channel']} %{{customdata[0]}}<br>"
                f"{TEXT['hover_mean']} %{{customdata[1]:.3f}}<extra></extra>")
    # Units of a fully connected layer (1 x 1 maps) make one small picture, not a wall of big pixels.
    tallest = 240 if maps.shape[1] * maps.shape[2] == 1 else 560
    return picture(grid, colorscale="gray" if symmetric else "viridis", zmin=-limit if symmetric else None,
                   zmax=limit if symmetric else None, customdata=customdata, hovertemplate=template,
                   height=int(np.clip(360 * grid.shape[0] / grid.shape[1], 80, tallest)))


def stage_title(index: int, feature_map: explain.FeatureMap) -> str:
    maps = feature_map.maps
    key = "stage_maps" if feature_map.convolutional else "stage_units"
    return TEXT[key].format(index=index, title=feature_map.stage.title, channels=maps.shape[0],
                            height=maps.shape[1], width=maps.shape[2])


def identity(name: str) -> tuple[str, str]:
    """What names a model's weights in the caches: its file and the date it was saved."""
    record = models[name][0]
    return str(record.path), record.date


st.title(TEXT["title"])
st.write(TEXT["intro"].format(**nouns))
if not models:
    st.warning(TEXT["no_models"].format(dataset=spec.title))
    st.stop()
for name, problem in ensemble.problems.items():
    st.warning(TEXT["left_out"].format(name=ui.plain(name), problem=ui.say(problem)))

# --- the input ---------------------------------------------------------------------------------------
choose, show, pick = st.columns([2, 1, 2], gap="large")
with choose:
    source = st.radio(TEXT["source"], ["drawing", "test", "upload"], format_func=TEXT.get,
                      index=0 if "last_digit" in st.session_state else 1, horizontal=True)
    pixels, label = None, None
    if source == "drawing":
        pixels = st.session_state.get("last_digit")
        if pixels is None:
            st.info(TEXT["no_drawing"].format(**nouns))
    elif source == "test":
        try:
            test = data.load(dataset, train=False)
        except data.DatasetNotFound as error:
            st.warning(TEXT["no_data"].format(error=error))
        else:
            st.session_state.setdefault("inside_index", 0)
            index = st.number_input(TEXT["index"], 0, len(test) - 1, key="inside_index")
            st.button(TEXT["random"],
                      on_click=lambda: st.session_state.update(inside_index=random.randrange(len(test))))
            pixels, label = test.images[index].numpy(), int(test.labels[index])
    else:
        upload = st.file_uploader(TEXT["upload_label"].format(**nouns), type=["png", "jpg", "jpeg"])
        if upload is not None:
            try:
                stages = preprocess.prepare(preprocess.read_image(upload.getvalue(), name=upload.name),
                                            dataset=dataset)
            except preprocess.ImageError as error:
                st.error(ui.say(error))
            else:
                if stages.empty:
                    st.info(TEXT["empty"].format(problem=ui.say(stages.problem)))
                pixels = stages.centred  # None when there is no digit
if pixels is None:
    st.stop()
x = explain.as_input(pixels, dataset)
shown = (x[0, 0] * spec.std + spec.mean).numpy()  # the pixels the models get, in [0, 1]
with show:
    st.plotly_chart(picture(shown, zmin=0, zmax=1, height=200), key="input", width="stretch")
    st.caption(TEXT["input_caption"] + ("" if label is None else " · " + TEXT["label"].format(label=classes[label])))

with pick:
    names = list(models)
    default = names.index("lenet5") if "lenet5" in names else 0
    chosen = [st.selectbox(TEXT["model"], names, index=default, key="inside_model")]
    if len(names) > 1 and st.toggle(TEXT["second"], key="inside_side_by_side"):
        others = [n for n in names if n != chosen[0]]
        default = others.index("resnet18") if "resnet18" in others else len(others) - 1
        chosen.append(st.selectbox(TEXT["second_model"], others, index=default, key="inside_model_2"))
    # A selectbox keeps its choice by the text shown, and shows "Choose an option" for a text that is gone: a key
    # for each set of texts (another dataset's classes; "the true label (7)" lost it when the image changed).
    own = TEXT["explain_answer"] if label is None else TEXT["explain_label"]
    explained = ui.class_choice(TEXT["explain"], classes, first=own, key=f"inside_explain_{dataset}_{own}")
    target = label if explained is None else explained
    left, right = st.columns(2)
    patch = left.slider(TEXT["patch"], 2, 14, 4)
    stride = right.slider(TEXT["stride"], 1, 7, 2)

# --- the view on screen, for every chosen model ------------------------------------------------------------
# Only the view on screen is computed (tabs would run them all on every rerun); the answer and the
# feature maps, which every view uses, are one forward pass.
start = time.perf_counter()
insides = [explain.look_inside(models[name][1], x, target=target) for name in chosen]
image_key = hashlib.sha256(x.numpy().tobytes()).hexdigest()


def side_by_side():
    """(slot, column, model name, Inside) for each chosen model, in columns of one row."""
    return zip(range(len(chosen)), st.columns(len(chosen)), chosen, insides, strict=True)


for _, column, name, inside in side_by_side():
    column.markdown(TEXT["answer"].format(model=ui.plain(name), answer=classes[inside.answer],
                                          probability=float(inside.probabilities.max()),
                                          target=classes[inside.target]))
view = st.radio(TEXT["view"], VIEWS, format_func=dict(zip(VIEWS, TEXT["views"], strict=True)).get, horizontal=True,
                key="inside_view", label_visibility="collapsed")
timing = st.empty()


def computing(name: str):
    """A spinner, shown when a view's computation takes more than half a second (a cache miss)."""
    return st.spinner(TEXT["computing"].format(view=TEXT["views"][VIEWS.index(view)], model=ui.plain(name)))


if view == "maps":
    st.caption(TEXT["maps_help"].format(**nouns))
    for slot, column, _, inside in side_by_side():
        if not inside.maps:  # a network built of a flatten and its read-out has no stage to show
            column.info(TEXT["no_maps"])
        for index, feature_map in enumerate(inside.maps, start=1):
            column.markdown(f"**{stage_title(index, feature_map)}**")
            if not feature_map.convolutional:
                column.caption(TEXT["units_note"])
            column.plotly_chart(tiles(feature_map.maps), key=f"maps_{slot}_{index}", width="stretch")

elif view == "filters":
    st.caption(TEXT["filters_help"])
    for slot, column, _, inside in side_by_side():
        if inside.filters is None:
            column.info(TEXT["no_filters"])
            continue
        if inside.filters.shape[-2:] == x.shape[-2:]:  # whole-image templates of a fully connected layer
            column.caption(TEXT["templates"].format(shown=min(MAX_FILTERS, len(inside.filters)),
                                                    total=len(inside.filters)))
        column.plotly_chart(tiles(inside.filters[:MAX_FILTERS], symmetric=True), key=f"filters_{slot}",
                            width="stretch")

elif view == "saliency":
    st.caption(TEXT["saliency_help"])
    for slot, column, name, inside in side_by_side():
        model, key = models[name][1], identity(name)
        with column, computing(name):
            sensitivity = saliency_map(model, key, image_key, inside.target, x)
            convolutional = any(m.convolutional for m in inside.maps)
            cam, cam_stage = grad_cam(model, key, image_key, inside.target, x) if convolutional else (None, None)
        left, right = column.columns(2)
        left.markdown(f"**{TEXT['saliency']}**")
        left.plotly_chart(picture(sensitivity, colorscale="hot"), key=f"saliency_{slot}", width="stretch")
        right.markdown(f"**{TEXT['cam']}**")
        if cam is None:
            right.info(TEXT["no_cam"])
            continue
        right.plotly_chart(picture(cam, colorscale="turbo", zmin=0, zmax=1, under=shown, opacity=0.5),
                           key=f"cam_{slot}", width="stretch")
        index, feature_map = next((i, m) for i, m in enumerate(inside.maps, start=1) if m.stage.name == cam_stage)
        right.caption(TEXT["cam_stage"].format(index=index, title=feature_map.stage.title,
                                               height=feature_map.maps.shape[1], width=feature_map.maps.shape[2]))

elif view == "occlusion":
    st.caption(TEXT["occlusion_help"])
    for slot, column, name, inside in side_by_side():
        with column, computing(name):
            drop = occlusion(models[name][1], identity(name), image_key, inside.target, patch, stride, x)
        limit = float(np.abs(drop).max()) or 1.0
        column.plotly_chart(picture(drop, colorscale="rdbu_r", zmin=-limit, zmax=limit, under=shown, opacity=0.75,
                                    height=320),
                            key=f"occlusion_{slot}", width="stretch")
        column.caption(TEXT["occlusion_scale"].format(drop=max(float(drop.max()), 0.0),
                                                      rise=max(-float(drop.min()), 0.0)))

elif view == "channel":
    st.caption(TEXT["channel_help"])
    for slot, column, name, inside in side_by_side():
        model, key = models[name][1], identity(name)
        if not inside.maps:
            column.info(TEXT["no_maps"])
            continue
        with column:
            left, right = st.columns(2)
            # Keys name the model and stage: another model or stage has other choices. Drawn only while this
            # view is on screen, they are kept (ui.kept) through a look at another view, as tabs kept them.
            index = left.selectbox(TEXT["channel_stage"], range(len(inside.maps)),
                                   key=ui.kept(f"inside_stage_{slot}_{name}", 0),
                                   format_func=lambda i, maps=inside.maps: stage_title(i + 1, maps[i]))
            feature_map = inside.maps[index]
            stage = feature_map.stage.name
            channel = right.number_input(TEXT["channel_number"], 0, feature_map.maps.shape[0] - 1,
                                         key=ui.kept(f"inside_channel_{slot}_{name}_{stage}", 0))
            with computing(name):
                pattern = grown_pattern(model, key, stage, channel, dataset)
            st.plotly_chart(picture(pattern, zmin=0, zmax=1, height=200), key=f"pattern_{slot}", width="stretch")
            st.caption(TEXT["pattern"])
            try:
                with computing(name):
                    indices, values = favourites(model, key, stage, channel, dataset)
            except data.DatasetNotFound as error:
                st.warning(TEXT["no_data"].format(error=error))
                continue
            test = data.load(dataset, train=False)
            captions = [f"{classes[int(test.labels[i])]} · {v:.2f}" for i, v in zip(indices, values, strict=True)]
            st.image([test.images[i].numpy() for i in indices], width=56, caption=captions)
            st.caption(TEXT["top"])

timing.caption(TEXT["timing"].format(ms=1000 * (time.perf_counter() - start)))
