"""server.FrontendFromMemory: Streamlit's frontend files from memory, everything else left to Streamlit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import server

SCRIPT = next((server.FRONTEND / "static" / "js").glob("*.js"))  # one of the bundles a browser fetches


def request(middleware: server.FrontendFromMemory, path: str, method: str = "GET") -> list[dict]:
    """What the middleware sends for one HTTP request; Streamlit's part is a stand-in that answers 418."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    asyncio.run(middleware({"type": "http", "method": method, "path": path}, receive, send))
    return sent


async def streamlit(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b"streamlit"})


@pytest.fixture
def middleware() -> server.FrontendFromMemory:
    return server.FrontendFromMemory(streamlit)


def test_a_frontend_file_is_read_once_and_then_sent_from_memory(middleware, monkeypatch):
    path = f"/static/js/{SCRIPT.name}"
    start, body = request(middleware, path)
    headers = dict(start["headers"])
    assert start["status"] == 200 and body["body"] == SCRIPT.read_bytes()
    assert headers[b"content-type"] == b"text/javascript; charset=utf-8"
    assert headers[b"content-length"] == str(SCRIPT.stat().st_size).encode()
    assert headers[b"cache-control"] == b"public, immutable, max-age=31536000"

    def unreadable(self):
        raise AssertionError(f"read {self} again")

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    assert request(middleware, path) == [start, body]


@pytest.mark.parametrize("path, method", [
    ("/static/js/no-such-bundle.js", "GET"),  # Streamlit answers with its index page
    ("/static/../__init__.py", "GET"),  # outside the frontend's folder: Streamlit refuses it
    ("/static/js", "GET"),  # a folder
    (f"/static/js/{SCRIPT.name}", "POST"),
    ("/_stcore/health", "GET"),
    ("/Draw", "GET"),
])
def test_anything_else_goes_on_to_streamlit(middleware, path, method):
    start, body = request(middleware, path, method)
    assert start["status"] == 418 and body["body"] == b"streamlit"
    assert not middleware.files


def test_a_websocket_goes_on_to_streamlit():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(server.FrontendFromMemory(app)({"type": "websocket", "path": "/_stcore/stream"}, None, None))
    assert seen == ["websocket"]
