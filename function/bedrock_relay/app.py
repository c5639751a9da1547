"""The Flask app: /healthz, /chat, and JSON errors for everything that goes wrong."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import formats, logs
from .bedrock import UpstreamError, make_client, open_stream
from .relay import Pump, Relay, peer_closed
from .settings import Settings, from_env
from .validation import InvalidRequest, parse_body, validate

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    # Proxies such as nginx buffer responses unless told not to.
    "X-Accel-Buffering": "no",
    # Stops browsers buffering the start of a text/plain body to sniff its type.
    "X-Content-Type-Options": "nosniff",
}
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
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InvalidRequest, _invalid_request)
    app.register_error_handler(UpstreamError, _upstream_error)
    app.add_url_rule("/healthz", view_func=healthz)
    app.add_url_rule("/chat", view_func=chat, methods=["POST"])
    return app


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    """Return the one JSON error shape every failure uses."""
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-cache"
    if "request_id" in g:
        response.headers["X-Request-Id"] = g.request_id
    return response


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
    logs.log_request(path=request.path, status=exc.code, outcome="rejected", errorCode=code)
    return error_response(exc.code or 500, code, message, headers)


def _invalid_request(exc: InvalidRequest) -> Response:
    return error_response(400, exc.code, exc.message)


def _upstream_error(exc: UpstreamError) -> Response:
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


def _deadline(context: dict, settings: Settings, started: float) -> float:
    """Return the monotonic time to end the stream: before Lambda's deadline, within the cap."""
    deadline = started + settings.max_stream_seconds
    lambda_deadline_ms = context.get("deadline")
    if isinstance(lambda_deadline_ms, (int, float)) and not isinstance(lambda_deadline_ms, bool):
        remaining = lambda_deadline_ms / 1000 - time.time()
        deadline = min(deadline, started + remaining - settings.deadline_margin_seconds)
    return deadline


def chat() -> Response:
    """Validate the request, open the Bedrock stream, then relay it in the negotiated format."""
    started = time.monotonic()
    settings: Settings = current_app.extensions["settings"]
    media_type = request.accept_mimetypes.best_match(formats.MEDIA_TYPES, default=formats.TEXT)
    context = _lambda_context()
    request_id = g.request_id = str(context.get("request_id") or uuid.uuid4())
    fields: dict[str, Any] = {"requestId": request_id, "format": media_type}
    try:
        chat_request = validate(parse_body(request.get_data(cache=False)), settings)
        fields["modelId"] = chat_request.model_id
        # Everything that can fail the request happens here, before the status is sent.
        stream = open_stream(
            current_app.extensions["bedrock"], chat_request.converse_args, settings.retry_after_seconds
        )
    except (InvalidRequest, UpstreamError) as exc:
        status = exc.status if isinstance(exc, UpstreamError) else 400
        logs.log_request(
            **fields,
            status=status,
            outcome="rejected",
            errorCode=exc.code,
            durationMs=round((time.monotonic() - started) * 1000),
        )
        raise
    sock = request.environ.get("gunicorn.socket")
    writer_class = formats.STREAM_WRITERS.get(media_type)
    relay = Relay(
        Pump(stream),
        writer_class() if writer_class else None,
        started=started,
        deadline=_deadline(context, settings, started),
        heartbeat_seconds=settings.heartbeat_seconds,
        client_gone=lambda: peer_closed(sock),
        on_finish=lambda finished: _log_finished(finished, fields),
    )
    headers = {**STREAM_HEADERS, "X-Request-Id": request_id}
    if relay.writer is None:
        return _json_answer(relay, headers)
    start = relay.writer.start(request_id, chat_request.model_id)

    def body():
        if start:
            yield start
        yield from relay.events()

    return Response(body(), status=200, headers=headers, content_type=relay.writer.content_type)


def _json_answer(relay: Relay, headers: dict) -> Response:
    """Run the stream to its end and answer once, with a real status if it failed."""
    relay.collect()
    if relay.failure:
        failure = relay.failure
        return error_response(502, failure.code, failure.message)
    summary = relay.summary
    response = jsonify(
        text="".join(relay.text_parts),
        reasoning="".join(relay.reasoning_parts) or None,
        stopReason=summary.stop_reason,
        usage=summary.usage_dict(),
        metrics={"ttftMs": summary.ttft_ms, "durationMs": summary.duration_ms},
    )
    response.headers.update(headers)
    return response


def _log_finished(relay: Relay, fields: dict) -> None:
    summary = relay.summary
    logs.log_request(
        **fields,
        status=502 if relay.writer is None and relay.failure else 200,
        outcome=relay.outcome,
        stopReason=summary.stop_reason,
        ttftMs=summary.ttft_ms,
        durationMs=summary.duration_ms,
        **summary.usage_dict(),
        errorCode=relay.failure.code if relay.failure else None,
    )
