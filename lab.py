"""MNIST CNN Lab's router, which app.py serves: the page list, the page config, and the sidebar every page shows."""

import streamlit as st

import ui
from core import checkpoints, data

# The icon first: a page's own icon would be the tab's until then, and a Material icon is fetched from Google's
# servers. The icon is a file of the lab's, sent in the page.
st.set_page_config(page_icon=ui.ICON, layout="wide")
ui.choose_language()  # before any word is drawn, the page list's first
page = st.navigation([st.Page(p.file, title=ui.page_title(p), icon=p.icon, url_path=p.url_path,
                              default=p is ui.PAGES[0]) for p in ui.PAGES])
# After st.navigation, so that the browser tab names the page it shows.
st.set_page_config(page_title=ui.texts("app")["page_title"].format(page=page.title))

ui.answer_with_page_threads()
ui.keep_widgets()
ui.session_id()  # every run: a page switch drops the owner token from the address, and this puts it back

# Drawn before the page runs, so that the page can read the chosen dataset (ui.dataset()).
words = ui.texts("sidebar")
with st.sidebar:
    ui.language_switch()
    st.caption(f":material/memory: {ui.say(ui.device_name())}")
    st.radio(words["dataset"], list(data.DATASETS), format_func=lambda name: data.DATASETS[name].title,
             key=ui.DATASET_KEY, horizontal=True)
    st.toggle(words["everyone"], key=ui.EVERYONE_KEY, help=words["everyone_help"])
    counts = {name: len(ui.models(name)) for name in data.DATASETS}
    st.caption(" · ".join(words["count"].format(dataset=data.DATASETS[n].title, count=c) for n, c in counts.items()))
    for problem in checkpoints.manifest_problems():  # a broken manifest hides its models alone: say so
        st.warning(ui.say(problem), icon=":material/warning:")
    manager = ui.job_manager()
    if manager.store_problem:
        st.warning(ui.say(manager.store_problem), icon=":material/warning:")
    jobs = [j for j in manager.snapshots(history=False) if j.active]
    if jobs:
        running = sum(j.status in ("running", "stopping") for j in jobs)
        st.caption(":material/model_training: " + words["training"].format(running=running, queued=len(jobs) - running))
    ui.teacher_sign_in()

page.run()
