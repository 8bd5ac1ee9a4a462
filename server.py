"""What app.py adds to Streamlit's server: its frontend files sent from memory.

A browser's first visit fetches about 110 of them, and through Streamlit's own handler each one took its
only Python thread 1-2 ms of CPU (seven middlewares, the file opened and read in a worker thread): most of
what a new student cost. Measured on 2 cores, opening Draw in a fresh browser cost the server 0.27-0.41 s
of CPU that way and 0.11-0.16 s from memory.
"""

import mimetypes
from pathlib import Path

import streamlit as st
from starlette.types import ASGIApp, Receive, Scope, Send

FRONTEND = Path(st.__file__).parent / "static"  # its /static/ folder holds the bundles, named by their content
CACHED = b"public, immutable, max-age=31536000"  # as Streamlit sends them: a name never changes its content

Response = tuple[list[tuple[bytes, bytes]], bytes]  # headers, body


class FrontendFromMemory:
    """GET /static/...: each of Streamlit's script, style and font files read once, then sent from memory.
    Everything else, and a path that is not such a file, goes on to Streamlit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.root = FRONTEND.resolve()
        self.files: dict[str, Response] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith("/static/"):
            found = self.files.get(scope["path"]) or self._read(scope["path"])
            if found is not None:
                headers, body = found
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _read(self, url_path: str) -> Response | None:
        path = (self.root / url_path.lstrip("/")).resolve()
        if self.root not in path.parents or not path.is_file():
            return None  # Streamlit answers it: refused, not found, or its index page
        body = path.read_bytes()
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind.startswith("text/"):
            kind += "; charset=utf-8"
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", CACHED)]
        self.files[url_path] = headers, body
        return headers, body

