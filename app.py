"""MNIST CNN Lab: `streamlit run app.py`."""

import streamlit as st

from core import checkpoints, data
from core.training import describe_device

st.set_page_config(page_title="MNIST CNN Lab", page_icon=":material/neurology:", layout="wide")

st.title("MNIST CNN Lab")
st.write(
    "Train the classic convolutional networks — LeNet-5, AlexNet, ZFNet, VGG, GoogLeNet, ResNet, "
    "MobileNet — on MNIST and Fashion-MNIST, and compare them on numbers measured on this machine."
)
st.caption(f"Device: {describe_device()}")

counts = {spec.title: len(checkpoints.find_models(name)) for name, spec in data.DATASETS.items()}
columns = st.columns(len(counts))
for column, (title, count) in zip(columns, counts.items(), strict=True):
    column.metric(f"Trained models · {title}", count)
