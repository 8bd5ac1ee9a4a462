"""The lab's words in English and Simplified Chinese: message catalogues looked up by key.

Every text a student or teacher reads lives in ``locales/<language>.toml``, one table per page or part of the
lab, looked up by a dotted key (``"train.intro"``) and filled with ``str.format`` fields. A key missing from a
catalogue falls back to English, so a page never shows a raw key; ``tests/test_i18n.py`` reports every such gap.

What core itself knows in English (the model cards, the class names) stays in core: the Chinese catalogue's
``[data]`` table holds its translations. A message that core makes for a page to show (a job's phase, a refused
setting) is a ``Message``: English wherever it is printed or logged, in the reader's language where a page says it.

    >>> say("jobs.stop", "zh")
    '停止'
    >>> message = Message("phases.queued")
    >>> str(message), message.in_language("zh")
    ('waiting in the queue', '在队列中等待')
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package (requirements.txt)
    import tomli as tomllib

if TYPE_CHECKING:
    from core.models import ModelCard

LANGUAGES = {"zh": "中文", "en": "English"}  # the sidebar's switch, in this order
DEFAULT = "en"
LANG_ENV = "MNIST_LAB_LANG"  # the server's default language, over the browser's
LOCALES = Path(__file__).resolve().parent.parent / "locales"


@functools.cache
def catalogue(language: str) -> dict[str, Any]:
    """A language's catalogue as it is in its file (nested tables), without the English fallback."""
    with open(LOCALES / f"{language}.toml", "rb") as file:
        return tomllib.load(file)


def glossary() -> dict[str, str]:
    """The terms a Chinese deep-learning course uses, English -> Chinese (``locales/glossary.toml``): every
    translation says a term the way this says it, which the tests check."""
    with open(LOCALES / "glossary.toml", "rb") as file:
        return tomllib.load(file)["terms"]


def _merged(english: Any, other: Any) -> Any:
    if isinstance(english, dict) and isinstance(other, dict):
        return {key: _merged(value, other.get(key)) for key, value in english.items()}
    return english if other is None else other


@functools.cache
def _complete(language: str) -> dict[str, Any]:
    english = catalogue(DEFAULT) | {"data": {}}
    return english if language == DEFAULT else _merged(english, catalogue(language)) | {
        "data": catalogue(language).get("data", {})}


def check_language(language: str | None) -> str:
    """``language`` if the lab speaks it, else the default: a typo in ?lang= or $MNIST_LAB_LANG is no error."""
    return language if language in LANGUAGES else DEFAULT


def texts(section: str, language: str = DEFAULT) -> Mapping[str, Any]:
    """One table of the catalogue (a page's words), English where a translation is missing."""
    return _complete(check_language(language))[section]


def say(key: str, language: str = DEFAULT, /, **fields: Any) -> str:
    """The text of a dotted key in a language, its fields filled in (a field that is a Message is said too)."""
    table: Any = _complete(check_language(language))
    for part in key.split("."):
        table = table[part]
    said = {name: value.in_language(language) if isinstance(value, Message) else value
            for name, value in fields.items()}
    return table.format(**said) if fields else table


def translated(section: str, english: str, language: str) -> str:
    """Core's own English (a card's sentence, a class name) in ``language``, where ``[data.<section>]`` of
    its catalogue has it; itself otherwise."""
    if language == DEFAULT:
        return english
    return _complete(language)["data"].get(section, {}).get(english, english)


class CardWords(NamedTuple):
    summary: str
    ideas: tuple[str, ...]
    paper_params: str


def card_words(card: ModelCard, language: str) -> CardWords:
    """A model card's sentences in ``language`` (``[data.cards.<name>]``, or the Messages of a built network's
    card), English where there is none."""
    english = CardWords(in_language(card.summary, language), tuple(in_language(i, language) for i in card.ideas),
                        in_language(card.paper_params, language))
    if language == DEFAULT:
        return english
    said = _complete(language)["data"].get("cards", {}).get(card.name, {})
    return CardWords(said.get("summary", english.summary), tuple(said.get("ideas", english.ideas)),
                     said.get("paper_params", english.paper_params))


def server_language() -> str | None:
    """$MNIST_LAB_LANG, where the teacher set it to a language the lab speaks."""
    chosen = os.environ.get(LANG_ENV, "").strip().lower()
    return chosen if chosen in LANGUAGES else None


def default_language(browser_locale: str | None) -> str:
    """The language a new visitor gets: $MNIST_LAB_LANG if the teacher set it, else the browser's (zh-*: Chinese)."""
    return server_language() or ("zh" if (browser_locale or "").lower().startswith("zh") else DEFAULT)


class Message(str):
    """A sentence from core, English as a string (for logs, the CLI and the tests) and sayable in any language.

    A job's phase or a refused setting is made in core but read on a page: the page says it with
    ``in_language``. Pickled as its key and fields, so it crosses from a worker process intact.
    """

    key: str
    fields: dict[str, Any]

    def __new__(cls, key: str, /, **fields: Any) -> Message:
        message = super().__new__(cls, say(key, DEFAULT, **fields))
        message.key, message.fields = key, fields
        return message

    def in_language(self, language: str) -> str:
        return say(self.key, language, **self.fields)

    def __reduce__(self):
        return _message, (self.key, self.fields)


def _message(key: str, fields: dict[str, Any]) -> Message:
    return Message(key, **fields)


def in_language(text: object, language: str) -> str:
    """What a page shows for something core said: a Message in ``language``, anything else (an error without a
    Message, a name) as it is. An exception is said by its first argument."""
    if isinstance(text, BaseException) and text.args and isinstance(text.args[0], Message):
        text = text.args[0]
    return text.in_language(language) if isinstance(text, Message) else str(text)
