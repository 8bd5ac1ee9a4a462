"""Home: what the lab is, its pages, the device and how many trained models each dataset has."""

import streamlit as st

import ui
from core import data

TEXT = {
    "title": "MNIST CNN Lab",
    "intro": "A lab for learning convolutional networks by doing. Train the classic architectures — "
             "LeNet-5, AlexNet, ZFNet, VGG, GoogLeNet, ResNet, MobileNet — and simple baselines on "
             "handwritten digits (MNIST) or clothes (Fashion-MNIST), and watch them learn.",
    "pages": "Pages",
    "train": "Train any architecture with your own hyperparameters and watch live loss and accuracy "
             "curves. Runs are shared by the whole class and queue one after the other.",
    "draw": "Draw a {thing} and watch every trained model answer at once, with the preprocessing shown step "
            "by step.",
    "compare": "Every trained model side by side on numbers measured on this machine: size, accuracy, training "
               "time, latency and throughput, accuracy per class, the mistakes and the hardest {pictures}, and each "
               "architecture layer by layer.",
    "inside": "Look inside a network: feature maps stage by stage, first-layer filters, saliency, Grad-CAM and "
              "ZFNet's occlusion experiment, for any model, or two side by side.",
    "generate": "A conditional GAN draws {pictures} of the class you choose: train it live, browse a gallery, walk "
                "its latent space, see the scores that prove the labels hold, and download a synthetic dataset.",
    "device": "Running on",
    "models": "Trained models",
    "models_help": "Shipped with the lab, plus your own runs (the sidebar's switch adds everyone's).",
}

nouns = ui.nouns(ui.dataset())
st.title(TEXT["title"])
st.write(TEXT["intro"])

st.subheader(TEXT["pages"])
for page in ui.PAGES[1:]:
    st.page_link(page.file, label=page.title, icon=page.icon)
    st.caption(TEXT[page.title.lower()].format(**nouns))

st.divider()
columns = st.columns(1 + len(data.DATASETS))
columns[0].metric(TEXT["device"], ui.device_name())
for column, (name, spec) in zip(columns[1:], data.DATASETS.items(), strict=True):
    column.metric(f"{TEXT['models']} · {spec.title}", len(ui.models(name)), help=TEXT["models_help"])
