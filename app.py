"""MNIST CNN Lab: `streamlit run app.py`. This file is the home page; the others live in pages/."""

import streamlit as st

import ui
from core import checkpoints, data

TEXT = {
    "title": "MNIST CNN Lab",
    "intro": "A lab for learning convolutional networks by doing. Train the classic architectures — "
             "LeNet-5, AlexNet, ZFNet, VGG, GoogLeNet, ResNet, MobileNet — and simple baselines on "
             "handwritten digits (MNIST) or clothes (Fashion-MNIST), and watch them learn.",
    "pages": "Pages",
    "train": "Train any architecture with your own hyperparameters and watch live loss and accuracy "
             "curves. Runs are shared by the whole class and queue one after the other.",
    "draw": "Draw a digit and watch every trained model answer at once, with MNIST's preprocessing "
            "shown step by step.",
    "compare": "Every trained model side by side on numbers measured on this machine: size, accuracy, training "
               "time, latency and throughput, accuracy per class, the mistakes and the hardest digits, and each "
               "architecture layer by layer.",
    "inside": "Look inside a network: feature maps stage by stage, first-layer filters, saliency, Grad-CAM and "
              "ZFNet's occlusion experiment, for any model, or two side by side.",
    "device": "Running on",
    "models": "Trained models",
    "models_help": "Shipped with the lab, plus the runs trained on this server.",
}

ui.page_setup("Home")
st.title(TEXT["title"])
st.write(TEXT["intro"])

st.subheader(TEXT["pages"])
st.page_link("pages/1_Train.py", label="Train", icon=":material/model_training:")
st.caption(TEXT["train"])
st.page_link("pages/2_Draw.py", label="Draw", icon=":material/draw:")
st.caption(TEXT["draw"])
st.page_link("pages/3_Compare.py", label="Compare", icon=":material/leaderboard:")
st.caption(TEXT["compare"])
st.page_link("pages/4_Inside.py", label="Inside", icon=":material/visibility:")
st.caption(TEXT["inside"])

st.divider()
columns = st.columns(1 + len(data.DATASETS))
columns[0].metric(TEXT["device"], ui.device_name())
for column, (name, spec) in zip(columns[1:], data.DATASETS.items(), strict=True):
    column.metric(f"{TEXT['models']} · {spec.title}", len(checkpoints.find_models(name)), help=TEXT["models_help"])
