"""MNIST CNN Lab's router, which app.py serves: the page list, the page config, and the sidebar every page shows."""

import streamlit as st

import ui
from core import checkpoints, data

# The icon first: a page's own icon would be the tab's until then, and a Material icon is fetched from Google's
# servers. The icon is a file of the lab's, sent in the page.
st.set_page_config(page_icon=ui.ICON, layout="wide")
page = st.navigation([st.Page(p.file, title=p.title, icon=p.icon, url_path=p.url_path, default=p is ui.PAGES[0])
                      for p in ui.PAGES])
# After st.navigation, so that the browser tab names the page it shows.
st.set_page_config(page_title=f"{page.title} · MNIST CNN Lab")

ui.answer_with_page_threads()
ui.keep_widgets()
ui.session_id()  # every run: a page switch drops the owner token from the address, and this puts it back

# Drawn before the page runs, so that the page can read the chosen dataset (ui.dataset()).
with st.sidebar:
    st.caption(f":material/memory: {ui.device_name()}")
    st.radio("Dataset", list(data.DATASETS), format_func=lambda name: data.DATASETS[name].title,
             key=ui.DATASET_KEY, horizontal=True)
    st.toggle("Everyone's runs", key=ui.EVERYONE_KEY,
              help="Off: the shipped models and your own runs. On: every run trained on this server too.")
    counts = {name: len(ui.models(name)) for name in data.DATASETS}
    st.caption(" · ".join(f"{data.DATASETS[n].title}: {c} trained models" for n, c in counts.items()))
    for problem in checkpoints.manifest_problems():  # a broken manifest hides its models alone: say so
        st.warning(problem, icon=":material/warning:")
    manager = ui.job_manager()
    if manager.store_problem:
        st.warning(manager.store_problem, icon=":material/warning:")
    jobs = [j for j in manager.snapshots(history=False) if j.active]
    if jobs:
        running = sum(j.status in ("running", "stopping") for j in jobs)
        st.caption(f":material/model_training: training: {running} running, {len(jobs) - running} queued")
    ui.teacher_sign_in()

page.run()
