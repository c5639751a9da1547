"""The native error shape, and the app-wide handler for HTTP errors that no API's own handler took."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import logs
from .events import INTERNAL_ERROR
from .formats import error_body

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
}
REJECTED = "rejected"


class Refusal(Exception):
    """A request refused with a status, a code and a message (and headers such as Retry-After)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def init_app(app: Flask) -> None:
    """Answer every HTTP error, and every unexpected exception, as a JSON error."""
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Refusal, refused)


def refused(exc: Refusal) -> Response:
    """Answer a Refusal in the native shape, and log it."""
    log_rejected(exc.status, exc.code, exc.message)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def store_unavailable() -> Refusal:
    """The refusal for a request the stream store must serve while it cannot be reached."""
    return Refusal(503, "store_unavailable", "the stream store is unavailable", {"Retry-After": "2"})


# The `type` OpenAI's SDKs expect with each status, for errors on the /v1 routes.
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def error_response(
    status: int, code: str, message: str, headers: dict | None = None, param: str | None = None
) -> Response:
    """Return the native error shape; on the OpenAI-compatible routes (/v1/...), OpenAI's."""
    if request.path.startswith("/v1/"):
        kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        response = jsonify(error={"message": message, "type": kind, "param": param, "code": code})
    else:
        response = jsonify(error_body(code, message))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def log_answered(status: int, outcome: str, **fields: Any) -> None:
    """Log a request that ended without a stream."""
    logs.log_request(
        requestId=g.request_id,
        path=request.path,
        **g.get("log_fields", {}),
        status=status,
        outcome=outcome,
        durationMs=round((time.monotonic() - g.started) * 1000),
        **fields,
    )


def log_rejected(status: int, code: str, message: str, outcome: str = REJECTED, **fields: Any) -> None:
    """Log a request refused without a stream."""
    # Error messages name fields and Bedrock's reasons, never the prompt's text.
    log_answered(status, outcome, errorCode=code, errorMessage=message, **fields)


def http_error(exc: HTTPException) -> Response:
    """Answer an HTTP error (a 404, a 405, a body too large) or a crash (a 500) in the native shape."""
    status = exc.code or 500
    code = HTTP_CODES.get(status, "http_error")
    message = exc.description or exc.name
    outcome = REJECTED
    if status == 413:
        limit = current_app.extensions["settings"].max_request_bytes
        message = f"the request body is larger than {limit} bytes"
    elif status == 405:
        message = (
            f"{request.method} is not allowed on {request.path}; use {', '.join(exc.valid_methods or [])}"
        )
    elif status == 404:
        message = f"no such path: {request.path}"
    elif status == 500:
        # Flask has logged the traceback; the client learns only where to look.
        code = outcome = INTERNAL_ERROR
        message = f"the relay failed; its log has the details under request id {g.request_id}"
    headers = dict(exc.get_headers())
    headers.pop("Content-Type", None)
    log_rejected(status, code, message, outcome)
    return error_response(status, code, message, headers)
