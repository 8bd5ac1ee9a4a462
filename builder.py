"""The Train page's "Build your own": a network layer by layer, its shapes and cost live, from a template, a file
or a saved run. The spec and its checks are core's (``core.spec``); this is the page's glue."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

import ui
from core import checkpoints, export, spec
from core.models import SPEC_PREFIX, get_card
from core.recipes import recipe

ROWS, VERSION = "builder_rows", "builder_version"  # session state: the table as last set, and its editor's round
# the columns a student edits
SHOWN = ("type", "channels", "units", "kernel", "stride", "padding", "groups", "p", *spec.BRANCHES)
WHOLE = ("channels", "units", "kernel", "stride", "padding", "groups", *spec.BRANCHES)


def _set_rows(network: spec.Spec) -> None:
    """Put a network in the table: the editor starts again from it (a new key drops its edits)."""
    st.session_state[ROWS] = spec.rows(network)
    st.session_state[VERSION] = st.session_state.get(VERSION, 0) + 1
    st.session_state[ui.kept("builder_name", "")] = network.name


def _sources(words, owner: str) -> None:
    """Start from a template, a spec file or one of this student's saved networks."""
    template = st.selectbox(words["template"], list(spec.TEMPLATES), key="builder_template",
                            format_func=lambda name: words["empty"] if name == "empty" else
                            get_card(name).title)
    if st.button(words["start_from"], icon=":material/restart_alt:"):
        _set_rows(spec.parse(spec.TEMPLATES[template]))
        st.rerun()
    upload = st.file_uploader(words["upload"], type=["json"], key="builder_upload")
    if upload is not None and st.session_state.get("builder_uploaded") != upload.file_id:
        st.session_state["builder_uploaded"] = upload.file_id  # read once, not again at every rerun
        try:
            _set_rows(spec.parse(upload.getvalue()))
        except spec.SpecError as error:
            st.error(ui.say(error))
        else:
            st.rerun()
    built = [r for r in checkpoints.read_manifest(checkpoints.runs_dir())
             if r.arch.startswith(SPEC_PREFIX) and r.owner == owner]
    if built:
        chosen = st.selectbox(words["saved"], built, format_func=lambda r: r.name, key="builder_saved")
        if st.button(words["load_saved"], icon=":material/upload:"):
            _set_rows(spec.stored_spec(chosen.arch))
            st.rerun()


def _inserted(table: list[dict], words) -> list[dict] | None:
    """The table with a new layer, when the insert button was pressed: by default just before the first flatten
    or global pooling, where a convolutional layer goes."""
    kind, where, button = st.columns([2, 2, 1], vertical_alignment="bottom")
    chosen = kind.selectbox(words["new_layer"], spec.LAYER_TYPES, key="builder_new_type")
    split = next((i for i, row in enumerate(table) if row.get("type") in ("flatten", "gap")), len(table))
    position = int(where.number_input(words["at"], 1, len(table) + 1, split + 1, key=f"builder_at_{len(table)}"))
    if button.button(words["insert"], icon=":material/add:", key="builder_insert"):
        return [*table[:position - 1], spec.new_row(chosen), *table[position - 1:]]
    return None


def _moved(table: list[dict], words) -> list[dict] | None:
    """The table with one layer moved up or down, when a move button was pressed."""
    left, up, down = st.columns([2, 1, 1], vertical_alignment="bottom")
    index = int(left.number_input(words["move"], 1, max(len(table), 1), key="builder_move")) - 1
    for column, step, label, icon in ((up, -1, words["up"], ":material/arrow_upward:"),
                                      (down, 1, words["down"], ":material/arrow_downward:")):
        other = index + step
        if column.button(label, icon=icon, disabled=not 0 <= other < len(table), key=f"builder_{label}"):
            table = list(table)
            table[index], table[other] = table[other], table[index]
            return table
    return None


def network_builder(card: DeltaGenerator, area: DeltaGenerator, *, dataset: str, owner: str) -> spec.Spec | None:
    """The builder: its sources and totals in ``card``, the layers and their costs in ``area``. Returns the network
    when it is valid and within the classroom budget, else None (the problem said in place)."""
    words = ui.texts("builder")
    if ROWS not in st.session_state:
        _set_rows(spec.parse(spec.TEMPLATES["lenet5-relu"]))
    with card:
        st.subheader(words["title"])
        st.caption(words["intro"])
        _sources(words, owner)
        name = st.text_input(words["name"], max_chars=60, key=ui.kept("builder_name", ""))
    with area:
        st.subheader(words["layers"])
        st.caption(words["layers_help"])
        columns = {"type": st.column_config.SelectboxColumn(words["type"], options=spec.LAYER_TYPES, required=True)}
        columns |= {c: st.column_config.NumberColumn(words["columns"][c], min_value=0, step=1) for c in WHOLE}
        columns["p"] = st.column_config.NumberColumn(words["columns"]["p"], min_value=0.0, max_value=0.95, step=0.05)
        frame = pd.DataFrame(st.session_state[ROWS], columns=list(spec.COLUMNS))
        frame = frame.astype({column: "float" for column in SHOWN[1:]})  # a blank cell, not "None"
        edited = st.data_editor(frame,
                                num_rows="dynamic", column_order=SHOWN, column_config=columns, width="stretch",
                                key=f"builder_table_{st.session_state[VERSION]}")
        table = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in edited.to_dict("records")]
        changed = _inserted(table, words) or _moved(table, words)
        if changed is not None:
            st.session_state[ROWS], st.session_state[VERSION] = changed, st.session_state[VERSION] + 1
            st.rerun()
        try:
            network = spec.from_rows(table, name or "my-network")
            costs = spec.layer_costs(network)
        except spec.SpecError as error:
            st.error(ui.say(error), icon=":material/error:")
            return None
        names = words["cost_columns"]
        st.dataframe([{names["index"]: i, names["type"]: layer.type,
                       names["shape"]: " x ".join(map(str, cost.output_shape)), names["params"]: cost.params,
                       names["macs"]: cost.macs} for i, (layer, cost) in enumerate(zip(network.layers, costs,
                                                                                            strict=True), start=1)],
                     hide_index=True, width="stretch",
                     column_config={names[c]: st.column_config.NumberColumn(format="localized")
                                    for c in ("params", "macs")})
    params, macs = sum(c.params for c in costs), sum(c.macs for c in costs)
    over = spec.over_budget(params, macs)
    with card:
        left, right = st.columns(2)
        left.metric(words["params"], f"{params:,}", help=words["budget"].format(most=spec.MAX_PARAMS))
        right.metric(words["macs"], f"{macs / 1e6:.2f} M", help=words["budget"].format(most=spec.MAX_MACS))
        if over:
            st.error(ui.say(over), icon=":material/error:")
            return None
        downloads = st.container(horizontal=True)  # side by side where they fit, else one under the other
        downloads.download_button(words["download_spec"], network.dumps(), file_name=f"{network.name}.json",
                             mime="application/json", icon=":material/download:", on_click="ignore")

        def script() -> str:  # made when clicked: it keeps the network with the runs
            return export.script(recipe(spec.register(network), dataset), file=f"{network.name}.py")

        downloads.download_button(words["download_script"], script, file_name=f"{network.name}.py",
                              mime="text/x-python", icon=":material/code:", on_click="ignore")
    return network
