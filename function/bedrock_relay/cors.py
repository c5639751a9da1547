"""Opt-in CORS for local cross-origin use; deployed, the Function URL's own CORS settings do this."""

from __future__ import annotations

from flask import Flask, Response, request

from .settings import Settings

# GET resumes a stream and reads a conversation, DELETE deletes one (with the store on).
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
# Cache-Control: no-cache asks for a fresh answer, past the answer cache.
ALLOW_HEADERS = "Content-Type, Accept, Authorization, X-Api-Key, Last-Event-ID, Cache-Control"
# Browsers hide response headers from cross-origin scripts unless listed here.
EXPOSE_HEADERS = ", ".join(
    (
        "X-Request-Id",
        "X-Stream-Id",
        "X-Conversation-Id",
        "X-Answer-Cache",
        "WWW-Authenticate",
        "Retry-After",
        "X-Should-Retry",
    ),
)
MAX_AGE_SECONDS = "600"


def init_app(app: Flask, settings: Settings) -> None:
    """Add CORS headers for the allowed origins; with none configured, add nothing at all."""
    # Behind a Function URL with CORS set, a second copy of each header breaks
    # browsers, so the default adds none.
    if not settings.cors_allow_origins:
        return
    allowed = frozenset(settings.cors_allow_origins)

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        response.vary.add("Origin")
        if not origin or ("*" not in allowed and origin not in allowed):
            return response
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE_SECONDS
        return response
