"""Serves the browser chat page, its files from function/static, and the sign-in settings it reads."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, abort, jsonify, send_from_directory

from .settings import Settings

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


def init_app(app: Flask, settings: Settings) -> None:
    """Add `GET /` (the chat page), `GET /static/<name>` and `GET /config`."""
    app.add_url_rule("/", view_func=index)
    app.add_url_rule("/static/<path:name>", view_func=static_file)
    app.add_url_rule("/config", "config", lambda: config(settings))


def config(settings: Settings) -> Response:
    """Tell the page what sign-in the service expects and which models it may pick; nothing here is a
    secret (the OpenAPI document, public too, lists the same models)."""
    jwt_on = "jwt" in settings.auth_modes
    return jsonify(
        models={"allowed": list(settings.allowed_model_ids), "default": settings.model_id},
        # Conversations kept by the service, listed per caller: it needs the store and sign-in.
        history=bool(settings.streams_table and settings.auth_modes),
        auth={
            "modes": list(settings.auth_modes),
            "issuer": settings.jwt_issuer if jwt_on else None,
            "clientId": settings.jwt_audience[0] if jwt_on else None,
            # What the page asks for: an id token with an email to show (the template's Cognito
            # client allows these three), and the scope the service requires, if any.
            "scopes": " ".join(filter(None, ["openid email profile", settings.jwt_required_scope]))
            if jwt_on
            else None,
            # With a required scope the page sends its access token: only those carry scopes.
            "requiredScope": (settings.jwt_required_scope or None) if jwt_on else None,
        },
    )


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
