"""MNIST CNN Lab: datasets, the architecture zoo, training, checkpoints and measurements.

Nothing in this package imports Streamlit; the app's pages and the command line both build on it.
"""

__version__ = "0.1.0"
