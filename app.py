"""MNIST CNN Lab: `streamlit run app.py` serves lab.py (the router and its pages) to the class.

This is Streamlit's own server (st.App) with one addition, server.FrontendFromMemory: the files of
Streamlit's frontend come from memory, which makes a student's first visit cost the server half as much.
"""

import streamlit as st
from starlette.middleware import Middleware

from server import FrontendFromMemory

app = st.App("lab.py", middleware=[Middleware(FrontendFromMemory)])
