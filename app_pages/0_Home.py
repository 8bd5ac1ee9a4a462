"""Home: what the lab is, its pages, the device and how many trained models each dataset has."""

import streamlit as st

import ui
from core import data

TEXT = ui.texts("home")

nouns = ui.nouns(ui.dataset())
st.title(TEXT["title"])
st.write(TEXT["intro"])

st.subheader(TEXT["pages"])
for page in ui.PAGES[1:]:
    st.page_link(page.file, label=ui.page_title(page), icon=page.icon)
    st.caption(TEXT[page.url_path.lower()].format(**nouns))

st.divider()
columns = st.columns(1 + len(data.DATASETS))
columns[0].metric(TEXT["device"], ui.say(ui.device_name()))
for column, (name, spec) in zip(columns[1:], data.DATASETS.items(), strict=True):
    column.metric(f"{TEXT['models']} · {spec.title}", len(ui.models(name)), help=TEXT["models_help"])
