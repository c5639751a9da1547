"""The Flask app: /healthz, /chat, the browser page, and JSON errors for everything that goes wrong."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from flask import Flask, Response, abort, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import cors, formats, logs, static
from .bedrock import UpstreamError, make_client, open_stream
from .relay import Pump, Relay, ms_since
from .settings import Settings, from_env
from .validation import InvalidRequest, parse_body, validate

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    # Proxies such as nginx buffer responses unless told not to.
    "X-Accel-Buffering": "no",
    # Stops browsers buffering the start of a text/plain body to sniff its type.
    "X-Content-Type-Options": "nosniff",
}
# Lambda request ids are UUIDs; anything else from the header is not echoed into a response header.
REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,128}")
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app; settings come from the environment, and tests override them with a dict."""
    app = Flask(__name__, static_folder=None)
    config = dict(test_config or {})
    client = config.pop("BEDROCK_CLIENT", None)
    settings = from_env().with_overrides(config)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.extensions["settings"] = settings
    # One client per process: it holds the connection pool to Bedrock.
    app.extensions["bedrock"] = client or make_client(settings)
    logs.init_logging()
    app.before_request(_identify)
    app.after_request(_common_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InvalidRequest, _invalid_request)
    app.register_error_handler(UpstreamError, _upstream_error)
    app.add_url_rule("/healthz", view_func=healthz)
    app.add_url_rule("/chat", view_func=chat, methods=["POST"])
    static.init_app(app)
    cors.init_app(app, settings)
    return app


def _identify() -> None:
    """Name the request: Lambda's request id when LWA forwards one, else a fresh uuid."""
    g.started = time.monotonic()
    g.context = _lambda_context()
    lambda_id = g.context.get("request_id")
    valid = isinstance(lambda_id, str) and REQUEST_ID.fullmatch(lambda_id)
    g.request_id = lambda_id if valid else str(uuid.uuid4())


def _common_headers(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-cache")
    response.headers["X-Request-Id"] = g.request_id
    return response


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    """Return the one JSON error shape every failure uses."""
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _log_rejected(status: int, code: str, message: str, **fields: Any) -> None:
    logs.log_request(
        requestId=g.request_id,
        path=request.path,
        **g.get("log_fields", {}),
        status=status,
        outcome="rejected",
        errorCode=code,
        # Error messages name fields and Bedrock's reasons, never the prompt's text.
        errorMessage=message,
        durationMs=ms_since(g.started),
        **fields,
    )


def _http_error(exc: HTTPException) -> Response:
    code = HTTP_CODES.get(exc.code or 500, "http_error")
    message = exc.description or exc.name
    if exc.code == 413:
        limit = current_app.extensions["settings"].max_request_bytes
        message = f"the request body is larger than {limit} bytes"
    elif exc.code == 405:
        message = (
            f"{request.method} is not allowed on {request.path}; use {', '.join(exc.valid_methods or [])}"
        )
    elif exc.code == 404:
        message = f"no such path: {request.path}"
    headers = dict(exc.get_headers())
    headers.pop("Content-Type", None)
    _log_rejected(exc.code or 500, code, message)
    return error_response(exc.code or 500, code, message, headers)


def _invalid_request(exc: InvalidRequest) -> Response:
    _log_rejected(400, exc.code, exc.message)
    return error_response(400, exc.code, exc.message)


def _upstream_error(exc: UpstreamError) -> Response:
    _log_rejected(exc.status, exc.code, exc.message, attempts=exc.attempts)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return error_response(exc.status, exc.code, exc.message, headers)


def healthz() -> Response:
    """Answer the readiness check at once; never touches Bedrock."""
    return jsonify(status="ok")


def _lambda_context() -> dict:
    """Read the invocation context LWA forwards; empty when running outside Lambda."""
    try:
        context = json.loads(request.headers.get("x-amzn-lambda-context", "{}"))
    except ValueError:
        return {}
    return context if isinstance(context, dict) else {}


def _deadline(settings: Settings) -> float:
    """Return the monotonic time to end the stream: before Lambda's deadline, within the cap."""
    deadline = g.started + settings.max_stream_seconds
    lambda_deadline_ms = g.context.get("deadline")
    if isinstance(lambda_deadline_ms, (int, float)) and not isinstance(lambda_deadline_ms, bool):
        remaining = lambda_deadline_ms / 1000 - time.time()
        deadline = min(deadline, time.monotonic() + remaining - settings.deadline_margin_seconds)
    return deadline


def _read_body(settings: Settings) -> bytes:
    data = request.get_data(cache=False)
    # Without a Content-Length (a chunked body) werkzeug stops at the limit instead of refusing.
    if request.content_length is None and len(data) >= settings.max_request_bytes:
        abort(413)
    return data


def chat() -> Response:
    """Validate the request, open the Bedrock stream, then relay it in the negotiated format."""
    settings: Settings = current_app.extensions["settings"]
    media_type = request.accept_mimetypes.best_match(formats.MEDIA_TYPES, default=formats.TEXT)
    # Taken before the Bedrock call, so a slow start eats into the stream, not past the deadline.
    deadline = _deadline(settings)
    g.log_fields = {"format": media_type}
    chat_request = validate(parse_body(_read_body(settings)), settings)
    g.log_fields["modelId"] = chat_request.model_id
    fields = {"requestId": g.request_id, **g.log_fields}
    if deadline <= time.monotonic():
        message = "too little time is left before the Lambda deadline"
        _log_rejected(503, "deadline", message)
        return error_response(503, "deadline", message)
    # Everything that can fail the request happens here, before the status is sent.
    stream = open_stream(
        current_app.extensions["bedrock"], chat_request.converse_args, settings.retry_after_seconds
    )
    writer = formats.WRITERS[media_type]()
    relay = Relay(
        Pump(stream),
        writer,
        start=writer.start(g.request_id, chat_request.model_id),
        started=g.started,
        deadline=deadline,
        heartbeat_seconds=settings.heartbeat_seconds,
        client=request.environ.get("gunicorn.socket"),
        on_finish=lambda finished: _log_finished(finished, fields),
    )
    if isinstance(writer, formats.JsonCollector):
        return _json_answer(relay, writer)
    response = Response(relay.events(), status=200, headers=STREAM_HEADERS, content_type=writer.content_type)
    # Runs even if the server never iterates the body (the client left before the first write).
    response.call_on_close(relay.close)
    return response


def _json_answer(relay: Relay, collector: formats.JsonCollector) -> Response:
    """Run the stream to its end and answer once, with a real status if it failed."""
    relay.run_to_end()
    if relay.failure:
        return error_response(502, relay.failure.code, relay.failure.message)
    response = jsonify(collector.answer(relay.summary))
    response.headers.update(STREAM_HEADERS)
    return response


def _log_finished(relay: Relay, fields: dict) -> None:
    summary = relay.summary
    usage = summary.usage_dict() or {"inputTokens": None, "outputTokens": None, "totalTokens": None}
    status = 200
    if isinstance(relay.writer, formats.JsonCollector):
        # A JSON answer's status is only sent at the end: none if the client left first.
        status = None if relay.outcome == "client_disconnected" else (502 if relay.failure else 200)
    logs.log_request(
        **fields,
        status=status,
        outcome=relay.outcome,
        stopReason=summary.stop_reason,
        ttftMs=summary.ttft_ms,
        durationMs=summary.duration_ms,
        **usage,
        # Counted here, so a cut stream still shows how much was generated (usage is then null).
        deltas=relay.deltas,
        errorCode=relay.failure.code if relay.failure else None,
        errorMessage=relay.failure.message if relay.failure else None,
    )
