from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def test_home_page_renders_the_device_and_model_counts():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "MNIST CNN Lab"
    assert any("Device:" in caption.value for caption in at.caption)
    assert [m.label for m in at.metric] == ["Trained models · MNIST", "Trained models · Fashion-MNIST"]
