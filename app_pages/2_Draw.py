"""Draw: a digit or a piece of clothing on the canvas, its preprocessing step by step, every model's answer at once."""

import time

import streamlit as st
from streamlit_drawable_canvas import st_canvas

import ui
from core import data, preprocess
from core.training import describe_device

TEXT = ui.texts("draw")
CANVAS_KEY = "draw_canvas"
CANVAS = 280  # pixels a side


def take_back(*, everything: bool) -> None:
    """Undo or Clear: the canvas is drawn again from the strokes that are left. Until it sends its new
    picture (``draw_waiting`` holds the one it sent last) the page shows the picture it last showed."""
    state = st.session_state
    objects = [] if everything else (state.get("draw_json") or {}).get("objects", [])[:-1]
    edits = state.get("draw_edits", 0) + 1
    # A new value each time, even when it holds the same strokes: the canvas redraws only on a change.
    drawing = {"objects": objects, "edits": edits}
    url = ((state.get(CANVAS_KEY) or {}).get("drawing") or {}).get("data")  # the picture the canvas sent last
    state.update(draw_restore=drawing, draw_json=drawing, draw_edits=edits, draw_waiting=url)
    if not objects:
        state["draw_picture"] = None


def stage_caption(name: str, stages: preprocess.Stages) -> str:
    if name == "centred" and stages.framing.by_mass:
        name = "centred_by_mass"
    return TEXT["stage_names"][name].format(box=stages.framing.box)


dataset = ui.dataset()
nouns = ui.nouns(dataset)
classes = ui.classes(dataset)
models = ui.ensemble(dataset)

st.title(TEXT["title"])
st.write(TEXT["intro"][dataset])
left, right = st.columns([2, 3], gap="large")

with left:
    source = st.radio(TEXT["source"], ["draw", "upload"], format_func=TEXT.get, horizontal=True,
                      label_visibility="collapsed")
    on_canvas = source == "draw"
    picture = None
    if on_canvas:
        pen = st.slider(TEXT["pen"], 6, 40, 18)
        if CANVAS_KEY not in st.session_state:  # back on this page: bring the last drawing back
            st.session_state["draw_restore"] = st.session_state.get("draw_json")
        # return_image_data makes the browser send its PNG; canvas.image_data would decode it with no size limit
        # (a crafted 13000x13000 one took 6.8 GB), so preprocess.read_canvas decodes the data URL instead.
        canvas = st_canvas(stroke_width=pen, stroke_color="#FFFFFF", background_color="#000000", width=CANVAS,
                           height=CANVAS, drawing_mode="freedraw", return_image_data=True, key=CANVAS_KEY,
                           initial_drawing=st.session_state.get("draw_restore"))
        # The canvas's own toolbar shows only while the mouse is over it, and a touch screen has no mouse.
        buttons = st.container(horizontal=True)  # filled below, once this run's drawing is read
        st.caption(TEXT["canvas_help"])
        url = (st.session_state[CANVAS_KEY].get("drawing") or {}).get("data")  # as st_canvas reads its state
        if url is not None and url != st.session_state.get("draw_waiting"):
            st.session_state["draw_waiting"] = None
            try:
                picture = preprocess.read_canvas(url, width=CANVAS, height=CANVAS)
            except preprocess.ImageError as error:
                st.error(ui.say(error))
            else:
                st.session_state["draw_json"], st.session_state["draw_picture"] = canvas.json_data, picture
        elif st.session_state.get("draw_restore"):
            picture = st.session_state.get("draw_picture")
        strokes = (st.session_state.get("draw_json") or {}).get("objects")
        buttons.button(TEXT["undo"], icon=":material/undo:", on_click=take_back, kwargs={"everything": False},
                       disabled=not strokes)
        buttons.button(TEXT["clear"], icon=":material/delete:", on_click=take_back, kwargs={"everything": True},
                       disabled=not strokes)
    else:
        upload = st.file_uploader(TEXT["upload_label"].format(**nouns), type=["png", "jpg", "jpeg"])
        if upload is not None:
            try:
                picture = preprocess.read_image(upload.getvalue(), name=upload.name)
            except preprocess.ImageError as error:
                st.error(ui.say(error))
    naive = st.toggle(TEXT["naive"], help=TEXT["naive_help"])

with right:
    start = time.perf_counter()
    # The canvas's paper is black, so a canvas covered in white ink is ink, not light paper.
    invert = False if on_canvas else None
    stages = preprocess.prepare(picture, dataset=dataset, naive=naive, invert=invert) if picture is not None else None
    if stages is None or (on_canvas and stages.problem == preprocess.BLANK):  # nothing drawn yet, or cleared
        st.info(TEXT["empty"].format(**nouns))
        st.stop()
    if stages.problem:
        st.warning(TEXT["nothing"].format(problem=ui.say(stages.problem)))
        st.stop()
    x = stages.tensor(dataset)
    st.session_state["last_digit"] = stages.centred  # the Inside page starts from it

    st.subheader(TEXT["stages"])
    shown = [(image, stage_caption(name, stages)) for name, image in stages.steps()]
    shown.append((((x[0, 0] - x.min()) / (x.max() - x.min())).numpy(), TEXT["stage_names"]["normalised"]))
    for column, (image, caption) in zip(st.columns(len(shown)), shown, strict=True):
        column.image(preprocess.stage_picture(image), caption=caption, width="stretch")

    if not len(models):
        st.warning(TEXT["no_models"].format(dataset=data.get_spec(dataset).title))
        st.stop()
    prediction = models.predict(x)[0]
    milliseconds = 1000 * (time.perf_counter() - start)

    st.markdown(ui.big_answer(classes[prediction.top]), unsafe_allow_html=True)
    st.caption(TEXT["consensus"].format(probability=prediction.confidence, n=len(prediction.answers)))
    dissenters = prediction.dissenters
    if dissenters:
        st.warning(TEXT["disagree"].format(n=len(dissenters), total=len(prediction.answers),
                                           names=", ".join(map(ui.plain, dissenters))))
    else:
        st.success(TEXT["agree"].format(total=len(prediction.answers)))
    st.caption(TEXT["timing"].format(ms=milliseconds, device=ui.say(describe_device())))  # the page's own threads
    for name, problem in (models.problems | prediction.left_out).items():
        st.warning(TEXT["left_out"].format(name=ui.plain(name), problem=ui.say(problem)))

columns = TEXT["columns"]
st.subheader(TEXT["answers"])
st.dataframe(
    [{columns["model"]: a.label, columns["answer"]: classes[a.top], columns["confidence"]: a.confidence,
      columns["probabilities"]: a.probabilities.tolist(), columns["agrees"]: a.top == prediction.top,
      columns["ms"]: round(a.milliseconds, 2)} for a in prediction.answers],
    hide_index=True, width="stretch", height="content",  # every model's row, without a scroll bar
    column_config={
        columns["confidence"]: st.column_config.ProgressColumn(min_value=0, max_value=1, format="percent"),
        columns["probabilities"]: st.column_config.BarChartColumn(
            y_min=0, y_max=1, help=TEXT["bars_help"].format(classes=", ".join(classes))),
        columns["agrees"]: st.column_config.CheckboxColumn(),
    },
)
