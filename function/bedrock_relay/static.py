"""Serves the browser chat page and its files from function/static, which ship in the Lambda package."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, abort, send_from_directory

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Only these kinds of file are served, each with an explicit type: a JS module
# with a guessed type is refused by browsers, and the guess depends on the host.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
MAX_AGE_SECONDS = 300


def init_app(app: Flask) -> None:
    """Add `GET /` (the chat page) and `GET /static/<name>`."""
    app.add_url_rule("/", view_func=index)
    app.add_url_rule("/static/<path:name>", view_func=static_file)


def index() -> Response:
    """Serve the chat page."""
    return _send("index.html")


def static_file(name: str) -> Response:
    """Serve one of the page's files."""
    return _send(name)


def _send(name: str) -> Response:
    content_type = CONTENT_TYPES.get(Path(name).suffix)
    if content_type is None:
        abort(404)
    # No conditional requests: a 304 has an empty body, and behind LWA's
    # streaming mode an empty body can hang some clients. The files are small.
    response = send_from_directory(
        STATIC_DIR, name, mimetype=content_type, conditional=False, etag=False, max_age=MAX_AGE_SECONDS
    )
    response.headers["Content-Type"] = content_type
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
