"""The app in a real browser: `streamlit run app.py` on a free port, Debian's Chromium via Playwright."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import server as server_module
import ui
from core import i18n

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _require_browser() -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing = "the playwright package"
    else:
        missing = None if os.path.exists(CHROMIUM) else f"Chromium at {CHROMIUM}"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is missing; .ci/run installs it")
        pytest.skip(f"{missing} is missing (apt-get install chromium; pip install playwright)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A fresh server per module, so that the first request really is the first."""
    _require_browser()
    port = _free_port()
    env = dict(os.environ, MNIST_LAB_RUNS=str(tmp_path_factory.mktemp("browser-runs")))
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            break
        except OSError:
            assert process.poll() is None, "streamlit exited"
            assert time.monotonic() < deadline, "streamlit did not start"
            time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1600}, locale="en-US")
    yield context.new_page()
    context.close()


def _url(server: str, spec: ui.PageSpec) -> str:
    return f"{server}/" if spec is ui.PAGES[0] else f"{server}/{spec.url_path}"


def _current_link(page):
    return page.get_by_test_id("stSidebarNav").locator("[data-testid=stSidebarNavLink][aria-current=page]")


def test_a_deep_link_as_the_first_request_shows_the_page_and_the_page_list(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server}/Train")
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=60_000)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Dataset")).to_be_visible(timeout=30_000)
    links = sidebar.get_by_test_id("stSidebarNav").get_by_test_id("stSidebarNavLink")
    expect(links).to_have_count(len(ui.PAGES))
    shown = [(link.get_by_test_id("stMarkdownContainer").inner_text(), link.get_attribute("href"))
             for link in links.all()]
    assert shown == [(spec.title, _url(server, spec)) for spec in ui.PAGES]
    expect(_current_link(page)).to_have_attribute("href", f"{server}/Train")


def test_the_frontend_comes_from_memory_and_nothing_from_outside(server, page):
    from playwright.sync_api import expect

    frontend, requested = [], []
    page.on("response", lambda r: frontend.append(r) if "/static/" in r.url else None)
    page.on("request", lambda r: requested.append(r.url))
    page.goto(f"{server}/Draw")
    expect(page.get_by_role("heading", name="Draw", exact=True)).to_be_visible(timeout=60_000)
    # the tab's icon is the lab's own file, in the page itself (a Material icon came from Google's servers)
    icon = page.locator("link[rel='shortcut icon'], link[rel='icon']").first
    expect(icon).to_have_attribute("href", re.compile(r"^data:image/svg\+xml;base64,"), timeout=30_000)
    page.get_by_test_id("stSidebar").get_by_role("link", name="Compare").click()
    expect(page.get_by_role("heading", name="Compare", exact=True)).to_be_visible(timeout=60_000)
    outside = [url for url in requested if not url.startswith((server, "data:", "blob:"))]
    assert not outside  # a classroom may have no internet: every request stays on the lab's server
    assert len(frontend) > 50  # the first visit fetches Streamlit's bundles
    for response in frontend:
        # Streamlit's own file handler would add an etag; server.FrontendFromMemory sends none
        assert response.status == 200 and "etag" not in response.headers, response.url
        assert response.headers["cache-control"] == "public, immutable, max-age=31536000", response.url
        name = response.url.split("/static/", 1)[1]
        assert response.body() == (server_module.FRONTEND / "static" / name).read_bytes(), response.url


# A tab's address once lab.py has run: its language, then who it belongs to.
ADDRESS = re.compile(rf"\?{ui.LANGUAGE_PARAM}=en&{ui.OWNER_PARAM}=[0-9a-f]{{16}}$")


def _owner(url: str) -> str:
    from urllib.parse import parse_qs, urlparse

    [token] = parse_qs(urlparse(url).query)[ui.OWNER_PARAM]
    return token


def test_navigation_goes_home_and_back(server, page):
    from playwright.sync_api import expect

    page.goto(server)
    page.get_by_role("heading", name="MNIST CNN Lab").wait_for(timeout=60_000)
    expect(page).to_have_url(ADDRESS, timeout=30_000)
    owner = _owner(page.url)
    page.get_by_test_id("stSidebar").get_by_role("link", name="Train").click()
    page.get_by_role("button", name="Start training").wait_for(timeout=60_000)
    expect(page).to_have_url(f"{server}/Train?{ui.LANGUAGE_PARAM}=en&{ui.OWNER_PARAM}={owner}",
                             timeout=30_000)  # the same student


def test_a_reloaded_tab_keeps_its_run_and_its_stop_button(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server}/Train")
    page.get_by_role("button", name="Start training").wait_for(timeout=60_000)
    expect(page).to_have_url(ADDRESS, timeout=30_000)
    page.get_by_label("Run name").fill("kept across a reload")
    page.get_by_role("button", name="Start training").click()
    stop = page.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_visible(timeout=120_000)
    page.reload()  # a new browser session: only the address says who this is
    expect(page.get_by_text("kept across a reload").first).to_be_visible(timeout=60_000)
    expect(stop).to_be_visible(timeout=60_000)
    stop.click()  # and it still works: the run stops, so the next tests have the machine
    # Under load an earlier test's job may still hold the machine, so the run can still be waiting in the queue.
    stopped = re.compile("stopped, best weights saved|stopped · withdrawn from the queue")
    expect(page.get_by_text(stopped).first).to_be_visible(timeout=120_000)


def _ellipse(cx: float, cy: float, rx: float, ry: float, points: int = 24) -> list[tuple[float, float]]:
    import math

    return [(cx + rx * math.sin(2 * math.pi * t / points), cy - ry * math.cos(2 * math.pi * t / points))
            for t in range(points + 1)]


def _draw(page, strokes) -> None:
    canvas = page.locator("[data-testid=stBidiComponentIsolated] canvas.upper-canvas")
    canvas.wait_for(timeout=60_000)
    box = canvas.bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
        page.mouse.up()
        page.wait_for_timeout(300)


@pytest.mark.parametrize(
    "digit, strokes",
    [(1, [[(145, 35), (135, 245)]]),
     (7, [[(75, 55), (205, 55), (125, 240)]]),
     (0, [_ellipse(140, 140, 55, 90)])],
)
def test_digits_drawn_with_the_mouse_are_read_by_the_models(server, page, digit, strokes):
    page.goto(f"{server}/Draw")
    _draw(page, strokes)
    consensus = page.locator("div.consensus")
    consensus.wait_for(timeout=60_000)
    assert consensus.inner_text().strip() == str(digit)
    assert page.get_by_text("Consensus:").is_visible()


def test_undo_and_clear_buttons_take_strokes_back(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server}/Draw")
    consensus = page.locator("div.consensus")
    _draw(page, [[(145, 35), (135, 245)]])  # a 1
    expect(consensus).to_have_text("1", timeout=60_000)
    _draw(page, [_ellipse(140, 190, 70, 55)])  # a loop over its foot: no longer a 1
    expect(consensus).not_to_have_text("1", timeout=60_000)
    # the page's own buttons, always visible (the canvas's toolbar shows on hover, and a touch screen has none)
    page.get_by_test_id("stBaseButton-secondary").filter(has_text="Undo").click()
    expect(consensus).to_have_text("1", timeout=60_000)
    page.get_by_test_id("stBaseButton-secondary").filter(has_text="Clear").click()
    expect(page.get_by_text("there is nothing to classify yet")).to_be_visible(timeout=60_000)
    expect(consensus).to_have_count(0)


def test_every_class_name_fits_the_answer_on_one_line(server, page):
    """The Draw page's answer at 1280x800, in the column and the font it has there: 'T-shirt/top' broke in three.
    In Chinese too, whose characters are twice as wide."""
    from core import data

    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{server}/Draw")
    _draw(page, [[(145, 35), (135, 245)]])
    answer = page.locator("div.consensus")
    answer.wait_for(timeout=60_000)
    names = [i18n.translated("classes", name, language) for language in i18n.LANGUAGES
             for spec in data.DATASETS.values() for name in spec.classes]
    # Every class name's answer, put beside the one on the page: in its column, with its fonts and styles.
    answer.evaluate("(e, html) => { const probe = document.createElement('div'); probe.id = 'probe'; "
                    "probe.innerHTML = html; e.parentElement.parentElement.appendChild(probe); }",
                    "".join(ui.big_answer(name) for name in names))
    measure = "e => [e.clientWidth, e.scrollWidth, e.offsetHeight, parseFloat(getComputedStyle(e).fontSize)]"
    for answer, name in zip(page.locator("#probe div.consensus").all(), names, strict=True):
        width, scrolled, height, size = answer.evaluate(measure)
        assert scrolled <= width and height < 1.5 * size, name  # on one line, inside its column
        assert size >= 24, name  # and still large


@pytest.mark.parametrize("dataset", ["MNIST", "Fashion-MNIST"])
def test_no_two_labels_of_compares_charts_overlap(server, page, dataset):
    """At 1280x800 the models' labels on the accuracy charts stand clear of each other, as Chromium draws them
    (googlenet's and mobilenet's touched on MNIST)."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{server}/Compare")
    page.locator(".js-plotly-plot .textpoint").first.wait_for(timeout=120_000)
    if dataset != "MNIST":
        page.get_by_text(dataset, exact=True).first.click()
        page.locator(".js-plotly-plot").get_by_text("Ankle boot").first.wait_for(timeout=120_000)
    page.wait_for_timeout(2000)  # every chart drawn
    charts = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .map(plot => [...plot.querySelectorAll('.textpoint text')].map(t => {
            const r = t.getBoundingClientRect(); return [t.textContent, r.left, r.top, r.right, r.bottom]; }))
        .filter(labels => labels.length)""")
    assert len(charts) == 2 and all(len(labels) == 11 for labels in charts)
    for labels in charts:
        for i, (name, left, top, right, bottom) in enumerate(labels):
            for other, *box in labels[i + 1:]:
                across, down = min(right, box[2]) - max(left, box[0]), min(bottom, box[3]) - max(top, box[1])
                assert across <= 0 or down <= 0, f"{name} and {other} overlap by {across:.0f}x{down:.0f} px"


@pytest.mark.parametrize("spec", ui.PAGES, ids=lambda spec: spec.title)
def test_each_deep_link_opens_its_page(server, page, spec):
    from playwright.sync_api import expect

    heading = "MNIST CNN Lab" if spec is ui.PAGES[0] else spec.title  # Home's heading is the lab's name
    page.goto(_url(server, spec))
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=60_000)
    expect(page).to_have_title(f"{spec.title} · MNIST CNN Lab")
    expect(_current_link(page)).to_have_attribute("href", _url(server, spec))


ZH = i18n.catalogue("zh")


@pytest.mark.parametrize("spec", ui.PAGES, ids=lambda spec: spec.url_path)
def test_each_page_opens_in_chinese_from_a_link_without_an_exception(server, page, spec):
    from playwright.sync_api import expect

    page.goto(f"{_url(server, spec)}?{ui.LANGUAGE_PARAM}=zh")  # a teacher's link: Chinese at once
    heading = ZH[spec.url_path.lower()]["title"]
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=60_000)
    expect(page).to_have_title(ZH["app"]["page_title"].format(page=ZH["pages"][spec.url_path.lower()]))
    page.get_by_test_id("stSidebar").get_by_text(ZH["sidebar"]["dataset"], exact=True).wait_for(timeout=30_000)
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_switching_to_chinese_on_draw_keeps_it_on_compare_and_back(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server}/Draw")
    expect(page.get_by_role("heading", name="Draw", exact=True)).to_be_visible(timeout=60_000)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text(i18n.LANGUAGES["zh"], exact=True).click()
    expect(page.get_by_role("heading", name=ZH["draw"]["title"], exact=True)).to_be_visible(timeout=60_000)
    expect(page).to_have_url(re.compile(rf"[?&]{ui.LANGUAGE_PARAM}=zh(&|$)"), timeout=30_000)
    sidebar.get_by_role("link", name=ZH["pages"]["compare"]).click()
    expect(page.get_by_role("heading", name=ZH["compare"]["title"], exact=True)).to_be_visible(timeout=60_000)
    sidebar.get_by_role("link", name=ZH["pages"]["draw"]).click()
    expect(page.get_by_role("heading", name=ZH["draw"]["title"], exact=True)).to_be_visible(timeout=60_000)
    expect(page).to_have_url(re.compile(rf"[?&]{ui.LANGUAGE_PARAM}=zh(&|$)"), timeout=30_000)


def test_a_browser_in_chinese_starts_in_chinese(server, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = context.new_page()
    try:
        page.goto(f"{server}/Train")
        expect(page.get_by_role("heading", name=ZH["train"]["title"], exact=True)).to_be_visible(timeout=60_000)
        expect(page.get_by_role("button", name=ZH["train"]["start"])).to_be_visible(timeout=30_000)
    finally:
        context.close()


def test_a_network_built_layer_by_layer_trains_and_answers_on_the_draw_page(server, page, tmp_path):
    """Build your own: a three-layer network opened from a file, then built again from the empty template with
    the Insert button, trained on 500 images for one epoch, and then one of the models that answer a drawing."""
    import json

    from playwright.sync_api import expect

    path = tmp_path / "three-layers.json"
    path.write_text(json.dumps({"version": 1, "name": "three layers", "layers": [
        {"type": "conv", "channels": 8, "kernel": 3, "padding": 1}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
        {"type": "flatten"}, {"type": "linear", "units": 10}]}))
    page.goto(f"{server}/Train")
    page.get_by_role("combobox", name="Architecture").click(timeout=60_000)
    page.get_by_role("option", name="Build your own…").click()
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(path))
    expect(page.get_by_label("Network name")).to_have_value("three layers", timeout=30_000)
    expect(page.get_by_text("15,770", exact=True)).to_be_visible()  # its parameters, counted live
    page.get_by_role("combobox", name="Template").click()
    page.get_by_role("option", name="empty (flatten, linear)").click()
    page.get_by_role("button", name="Start from this template").click()
    expect(page.get_by_text("7,850", exact=True)).to_be_visible(timeout=30_000)  # flatten, linear 10
    for kind in ("conv", "relu", "maxpool"):  # each inserted just before the flatten, where it is offered
        page.get_by_role("combobox", name="Add a layer").click()
        page.get_by_role("option", name=kind, exact=True).click()
        page.get_by_role("button", name="Insert").click()
        page.wait_for_timeout(1000)
    expect(page.get_by_text("15,770", exact=True)).to_be_visible(timeout=30_000)  # the same network, built here
    for label in ("Epochs", "Training images"):  # one epoch on 500 images: the sliders' lowest
        page.get_by_role("slider", name=label).focus()
        page.keyboard.press("Home")
    page.get_by_label("Run name").fill("built in chromium")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text("saved as “built in chromium”").first).to_be_visible(timeout=180_000)
    page.get_by_test_id("stSidebar").get_by_role("link", name="Draw").click()
    _draw(page, [[(145, 35), (135, 245)]])
    # a row of the answers table, whose cells the grid keeps for screen readers
    expect(page.locator("[role=gridcell]", has_text="built in chromium").first).to_be_attached(timeout=60_000)
