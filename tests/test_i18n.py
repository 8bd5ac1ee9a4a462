"""中文 / English: both catalogues hold the same keys and fields, every key is used, the glossary holds, core's
messages cross processes in either language, and every page reads in Chinese with no English sentence left."""

from __future__ import annotations

import json
import pickle
import re
import string
from collections.abc import Sequence
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui
from core import checkpoints, data, i18n
from core.i18n import Message
from core.models import get_card, list_models

REPO = Path(__file__).resolve().parent.parent
SOURCES = [REPO / "lab.py", REPO / "ui.py", REPO / "builder.py", *(REPO / "app_pages").glob("*.py"),
           *(REPO / "core").rglob("*.py")]
GLOSSARY = i18n.glossary()


def flat(table: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> text (or list of texts), without [data]: core's own English and its translations."""
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            if not (prefix == "" and key == "data"):
                out |= flat(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


ENGLISH, CHINESE = flat(i18n.catalogue("en")), flat(i18n.catalogue("zh"))


def fields(text: str) -> list[tuple[str, str, str | None]]:
    """Each format field's name, spec and conversion: a translation must keep all three."""
    return sorted((name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(text)
                  if name is not None)


def texts_of(value: object) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


def test_both_catalogues_hold_the_same_keys():
    assert sorted(set(ENGLISH) - set(CHINESE)) == []  # said in English to a Chinese reader: the fallback
    assert sorted(set(CHINESE) - set(ENGLISH)) == []  # a key English does not have is a typo


@pytest.mark.parametrize("key", sorted(ENGLISH))
def test_a_translation_keeps_the_format_fields_and_the_number_of_items(key):
    english, chinese = ENGLISH[key], CHINESE[key]
    assert type(english) is type(chinese)
    assert len(texts_of(english)) == len(texts_of(chinese))
    for en, zh in zip(texts_of(english), texts_of(chinese), strict=True):
        assert fields(en) == fields(zh), (en, zh)


def test_every_key_is_used():
    """Each part of a key is in the code as a string ("train", "queue_columns", "run") or a part of one
    (Message("phases.saved")), a dataclass's field (a table's columns are named by them), or a field of another text
    ({thing}): a key that nothing names is words nobody reads."""
    code = "\n".join(path.read_text() for path in SOURCES)
    named = set(re.findall(r"""["'.]([\w-]+)(?=["'.])""", code)) | set(re.findall(r"^    (\w+): ", code, re.MULTILINE))
    named |= {name for text in ENGLISH.values() for t in texts_of(text) for name, *_ in fields(t)}
    unused = [key for key in ENGLISH if not all(part in named for part in key.split("."))]
    assert unused == []


def glossary_misses(english: str, chinese: str) -> list[str]:
    plain = re.sub(r"\{[^}]*\}", "", english)  # a field's name is no word of the sentence
    return [term for term, said in GLOSSARY.items()
            if re.search(rf"\b{re.escape(term)}(s|es)?\b", plain, re.IGNORECASE) and said not in chinese]


@pytest.mark.parametrize("key", sorted(ENGLISH))
def test_the_glossary_term_is_used_wherever_its_english_is(key):
    for en, zh in zip(texts_of(ENGLISH[key]), texts_of(CHINESE[key]), strict=True):
        assert glossary_misses(en, zh) == [], (en, zh)


def test_every_model_card_and_class_name_is_translated():
    for name in list_models():
        card, said = get_card(name), i18n.card_words(get_card(name), "zh")
        assert said.summary != card.summary and said.paper_params != card.paper_params
        assert len(said.ideas) == len(card.ideas) and not set(said.ideas) & set(card.ideas)
        for english, chinese in zip((card.summary, *card.ideas), (said.summary, *said.ideas), strict=True):
            assert glossary_misses(english, chinese) == [], (english, chinese)
    fashion = data.get_spec("fashion").classes
    assert [i18n.translated("classes", name, "zh") for name in fashion] == [
        "T 恤/上衣", "裤子", "套头衫", "连衣裙", "外套", "凉鞋", "衬衫", "运动鞋", "包", "短靴"]
    assert i18n.translated("classes", "7", "zh") == "7"


def test_a_missing_translation_falls_back_to_english():
    english = {"page": {"title": "Train", "intro": "Pick one."}}
    assert i18n._merged(english, {"page": {"title": "训练"}}) == {"page": {"title": "训练", "intro": "Pick one."}}
    assert i18n.say("jobs.stop", "xx") == "Stop"  # a language the lab does not speak is English


def test_a_message_is_english_as_text_and_said_in_chinese_after_a_trip_through_a_pipe():
    message = Message("limits.too_many", queued=2)
    assert message.startswith("You have 2 runs waiting") and str(message) == message
    back = pickle.loads(pickle.dumps(ValueError(message)))
    assert i18n.in_language(back, "zh") == CHINESE["limits.too_many"].format(queued=2)
    nested = Message("settings.invalid", name="lr", expected=Message("settings.expected.positive"), value="-1.0")
    assert str(nested) == "lr must be a positive number, got -1.0"
    assert CHINESE["settings.expected.positive"] in nested.in_language("zh")
    assert i18n.in_language(ValueError("plain words"), "zh") == "plain words"  # said as it is


def test_the_default_language_is_the_teachers_else_the_browsers(monkeypatch):
    monkeypatch.delenv(i18n.LANG_ENV, raising=False)
    assert [i18n.default_language(locale) for locale in ("zh-CN", "zh-TW", "en-US", "de", None)] == [
        "zh", "zh", "en", "en", "en"]
    monkeypatch.setenv(i18n.LANG_ENV, "zh")
    assert i18n.default_language("en-US") == "zh"
    monkeypatch.setenv(i18n.LANG_ENV, "klingon")  # not a language of the lab: no error, the browser decides
    assert i18n.default_language("en-US") == "en"


# --- the pages, rendered ------------------------------------------------------------------------------------

# What may stay English on a Chinese page: names (the models', the papers' as published, the datasets'), units,
# code and the little English the lab's own name holds.
ALLOWED = sorted({get_card(name).title for name in list_models()} | {get_card(name).paper for name in list_models()}
                 | {"MNIST CNN Lab", "Fashion-MNIST", "Grad-CAM", "img/s", "CPU ms", "GPU ms", "CPU img/s",
                    "GPU img/s"}, key=len, reverse=True)
ENGLISH_RUN = re.compile(r"[A-Za-z][\w'’-]*(?:[ ,;:&.()]+[A-Za-z][\w'’-]*){2,}")


def english_runs(text: str) -> list[str]:
    text = re.sub(r"`[^`]*`|:material/\w+:|https?://\S+", " ", text)
    # and the names students gave their runs, which are theirs, in any language (other tests' runs among them)
    names = {job.name for job in ui.job_manager().snapshots(history=False)}
    names |= {record.name for record in checkpoints.find_models()}
    for allowed in [*ALLOWED, *sorted(names, key=len, reverse=True)]:
        text = text.replace(allowed, " ")
    return ENGLISH_RUN.findall(text)


# The fields of the elements' protos that hold no words: ids, keys, icons, pictures' addresses and data.
NOT_WORDS = {"id", "form_id", "key", "icon", "url", "data", "page_script_hash", "url_pathname", "page_name",
             "script_hash", "spec", "arrow_data", "css", "html", "format", "type", "src"}


def words_of(proto) -> list[str]:
    words = []
    for field, value in proto.ListFields():
        values = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        for item in values:
            if isinstance(item, str) and field.name not in NOT_WORDS:
                words.append(item)
            elif hasattr(item, "ListFields"):
                words += words_of(item)
        if field.name == "spec" and isinstance(value, str):  # a Plotly figure: its titles, names and notes
            figure = json.loads(value)
            layout = figure.get("layout", {})
            words += [t.get("name") or "" for t in figure.get("data", [])]
            words += [(layout.get(axis) or {}).get("title", {}).get("text", "") for axis in ("xaxis", "yaxis")]
            words.append(layout.get("title", {}).get("text", ""))
            words += [note.get("text", "") for note in layout.get("annotations", [])]
    return words


def page_words(at: AppTest) -> list[str]:
    def walk(node) -> list[str]:
        found = words_of(node.proto) if getattr(node, "proto", None) is not None else []
        for child in getattr(node, "children", {}).values():
            found += walk(child)
        return found

    return [w for w in walk(at._tree) if w]


def open_page(page: str, language: str, dataset: str = "mnist") -> AppTest:
    at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=300)
    at.query_params[ui.LANGUAGE_PARAM] = language
    at.session_state[ui.DATASET_KEY] = dataset
    at.switch_page(page)
    return at.run()


@pytest.mark.parametrize("dataset", ["mnist", "fashion"])
@pytest.mark.parametrize("page", [p.file for p in ui.PAGES])
def test_every_page_reads_in_chinese_with_no_english_sentence_left(page, dataset):
    at = open_page(page, "zh", dataset)
    assert not at.exception
    words = page_words(at)
    assert at.title[0].value in {CHINESE[f"{p.url_path.lower()}.title"] for p in ui.PAGES}
    assert [run for text in words for run in english_runs(text)] == []
    assert sum(bool(re.search(r"[\u4e00-\u9fff]", text)) for text in words) >= 5  # it is Chinese indeed


@pytest.mark.parametrize("page", [p.file for p in ui.PAGES])
def test_every_page_reads_in_english(page):
    at = open_page(page, "en")
    assert not at.exception
    assert not any(re.search(r"[\u4e00-\u9fff]", text) for text in page_words(at)
                   if text != CHINESE["sidebar.language"] and text != i18n.LANGUAGES["zh"])


def test_the_switch_changes_the_language_at_once_and_puts_it_in_the_address():
    at = open_page(ui.PAGES[1].file, "en")
    assert at.title[0].value == ENGLISH["train.title"]
    at.radio(key=ui.LANGUAGE_KEY).set_value("zh").run()
    assert at.title[0].value == CHINESE["train.title"] and at.query_params[ui.LANGUAGE_PARAM] in ("zh", ["zh"])
    at.switch_page(ui.PAGES[3].file).run()  # the address loses its query on a page switch; the session keeps it
    assert at.title[0].value == CHINESE["compare.title"] and at.query_params[ui.LANGUAGE_PARAM] in ("zh", ["zh"])


def test_a_run_trained_and_a_run_refused_are_said_in_chinese():
    from test_app import caption_has, run_until

    words = i18n.texts("train", "zh")
    at = open_page(ui.PAGES[1].file, "zh")
    [epochs] = [s for s in at.slider if s.label == words["epochs"]]
    epochs.set_value(30)
    [images] = [s for s in at.select_slider if s.label == words["images"]]
    images.set_value(60_000)
    [start] = [b for b in at.button if b.label == words["start"]]
    start.click().run()  # over the students' limit: refused, in Chinese
    refused = CHINESE["limits.too_big"].format(epochs=30, images=60_000, size=1_800_000, limit=1_200_000)
    assert [e.value for e in at.error] == [refused]

    [epochs] = [s for s in at.slider if s.label == words["epochs"]]
    epochs.set_value(1)
    [images] = [s for s in at.select_slider if s.label == words["images"]]
    images.set_value(500)
    [name] = [t for t in at.text_input if t.label == words["name"]]
    name.input("中文的运行")
    [start] = [b for b in at.button if b.label == words["start"]]
    start.click().run()
    at = run_until(at, lambda at: caption_has(at, CHINESE["phases.saved"]))
    assert [s.value for s in at.success] == [words["done"].format(name="中文的运行")]
    assert caption_has(at, f"{CHINESE['status.done']} · {CHINESE['phases.saved']}")
    page = page_words(at)
    assert CHINESE["charts.loss"] in page and CHINESE["charts.confusion"] in page  # the charts' titles
    assert [run for text in page for run in english_runs(text)] == []


def test_the_command_line_speaks_chinese_when_asked_and_its_json_never_changes(capsys, monkeypatch, tmp_path):
    from PIL import Image

    from core.__main__ import main

    assert main(["list", "--lang", "zh"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == CHINESE["cli.list_columns"]
    assert i18n.card_words(get_card("lenet5"), "zh").summary in table[2]
    main(["list", "--json"])
    english = json.loads(capsys.readouterr().out)
    main(["list", "--json", "--lang", "zh"])
    assert json.loads(capsys.readouterr().out) == english  # scripts read the same document

    test = data.load("fashion", train=False)
    trousers = int((test.labels == 1).nonzero()[0])
    Image.fromarray((test.images[trousers].numpy() * 255).astype("uint8")).save(tmp_path / "trousers.png")
    Image.new("L", (28, 28)).save(tmp_path / "blank.png")
    monkeypatch.setenv(i18n.LANG_ENV, "zh")  # the teacher's default, as good as --lang zh
    assert main(["predict", str(tmp_path / "trousers.png"), str(tmp_path / "blank.png"), "--dataset", "fashion"]) == 1
    out = capsys.readouterr().out
    assert "trousers.png：裤子（平均概率" in out
    nothing = CHINESE["cli.nothing"].format(image=tmp_path / "blank.png", problem=CHINESE["picture.blank"])
    assert CHINESE["cli.predict_error"].format(image=tmp_path / "blank.png", error=nothing) in out


def test_the_pages_keep_no_english_words_of_their_own():
    """Every word a page shows comes from the catalogues: no string of two English words in a page's code
    (docstrings aside)."""
    import ast

    found = []
    for path in [REPO / "lab.py", REPO / "builder.py", *(REPO / "app_pages").glob("*.py")]:
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef)) and isinstance(node.body[0], ast.Expr)}
        found += [f"{path.name}:{node.lineno}: {node.value}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                  and re.search(r"[A-Za-z]{2,}[ ,]+[A-Za-z]{2,}", node.value)]
    assert found == []


def test_every_chart_names_a_font_with_chinese_glyphs():
    at = open_page(ui.PAGES[3].file, "zh", "fashion")  # Compare: the most charts
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert len(figures) >= 4
    assert all("Noto Sans CJK SC" in figure["layout"]["font"]["family"] for figure in figures)
