"""GET /openapi.json: the API's OpenAPI document, with this deployment's models, limits and sign-in."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from flask import Flask, Response

from .settings import Settings

DOCUMENT = Path(__file__).with_name("openapi.json")
SECURITY = {"jwt": "bearer", "api_key": "apiKey"}


def init_app(app: Flask, settings: Settings) -> None:
    """Serve the document; it is read and filled in on the first request, not at start."""
    app.add_url_rule("/openapi.json", "openapi", lambda: _response(settings))


def document(settings: Settings) -> dict:
    """Return the document as this service runs: its allowed models, token limit and credentials."""
    doc = json.loads(DOCUMENT.read_text())
    schemas = doc["components"]["schemas"]
    fields = schemas["ChatRequest"]["properties"]
    fields["modelId"]["enum"] = list(settings.allowed_model_ids)
    fields["maxTokens"]["maximum"] = settings.max_tokens_limit
    fields = schemas["CompletionRequest"]["properties"]
    fields["model"]["enum"] = list(settings.allowed_model_ids)
    for name in ("max_tokens", "max_completion_tokens"):
        fields[name]["maximum"] = settings.max_tokens_limit
    # Either credential opens every route that is not public (those say `security: []`).
    doc["security"] = [{SECURITY[mode]: []} for mode in settings.auth_modes]
    # Routes of the stream store exist only with the store on; /usage only with per-caller limits.
    for path, item in list(doc["paths"].items()):
        store_off = item.pop("x-requires-store", False) and not settings.streams_table
        if (item.pop("x-requires-limits", False) and not settings.caller_limits) or store_off:
            del doc["paths"][path]
    return doc


@cache
def _body(settings: Settings) -> bytes:
    return json.dumps(document(settings), separators=(",", ":")).encode()


def _response(settings: Settings) -> Response:
    return Response(_body(settings), content_type="application/json")
