"""The OpenAI-compatible front door: POST /v1/chat/completions and GET /v1/models, on the same relay core."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, current_app, g, jsonify, request

from . import invocation
from .bedrock import UpstreamError
from .chat_api import STREAM_HEADERS, cached_answer, open_source, read_body, relay_for, stream_headers
from .errors import error_response, log_rejected
from .logs import RequestLog
from .openai_formats import ChunkWriter, CompletionWriter, failure_of
from .openai_request import OpenAIRequestError, parse
from .settings import Settings
from .validation import InvalidRequest, parse_body

logger = logging.getLogger(__name__)
bp = Blueprint("openai", __name__, url_prefix="/v1")


def _error(status: int, message: str, param: str | None = None, code: str | None = None, **headers: str):
    log_rejected(status, code or "invalid_request", message)
    return error_response(status, code or "invalid_request", message, headers, param)


@bp.errorhandler(OpenAIRequestError)
def _invalid(exc: OpenAIRequestError) -> Response:
    return _error(exc.status, exc.message, exc.param, exc.code)


@bp.errorhandler(UpstreamError)
def _upstream(exc: UpstreamError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
    return _error(exc.status, exc.message, None, exc.code, **headers)


@bp.get("/models")
def models() -> Response:
    """The models a request may name, in OpenAI's list shape."""
    settings: Settings = current_app.extensions["settings"]
    entries = [
        {"id": model, "object": "model", "created": 0, "owned_by": "bedrock"}
        for model in settings.allowed_model_ids
    ]
    return jsonify(object="list", data=entries)


@bp.post("/chat/completions")
def chat_completions() -> Response:
    """Relay a Chat Completions request: chunks with `stream: true`, else one chat.completion."""
    settings: Settings = current_app.extensions["settings"]
    deadline = invocation.deadline(settings)
    try:
        # Read and decoded as /chat's are: the same size limit, timeouts and JSON hardening.
        body = parse_body(read_body(settings))
    except InvalidRequest as exc:
        raise OpenAIRequestError(exc.message, None) from None
    completion = parse(body, settings)
    g.log_fields = {
        **g.log_fields,
        "api": "openai",
        "modelId": completion.model_id,
        "stream": completion.stream,
    }
    if completion.user:
        g.log_fields["user"] = completion.user[:64]  # logged as said, never trusted for anything
    if deadline <= time.monotonic():
        return _error(503, "too little time is left before the Lambda deadline", None, "deadline")
    if completion.stream:
        writer = ChunkWriter(g.request_id, completion.model_id, completion.include_usage)
    else:
        writer = CompletionWriter(g.request_id, completion.model_id)
    store = current_app.extensions.get("store")
    cache_key, hit = cached_answer(completion.converse_args, True)
    ids = {"streamId": hit.stream_id if hit else g.request_id} if store is not None else {}
    g.log_fields.update(ids)
    headers = stream_headers(ids)
    source = open_source(completion.converse_args, hit, deadline)
    # Kept as /chat streams are, with the store on: POST /chat/{id}/cancel, GET /chat/{id}.
    log = RequestLog(requestId=g.request_id, path=request.path, **g.log_fields)
    relay = relay_for(source, writer, completion.model_id, deadline, [log], cache_key)
    try:
        if completion.stream:
            headers = {**STREAM_HEADERS, **headers}
            response = Response(relay.body(), headers=headers, content_type=writer.content_type)
            response.call_on_close(relay.close)
            return response
        body_bytes = relay.run()
    except BaseException:
        relay.close()
        raise
    summary = relay.summary
    status = 200
    failure = failure_of(summary)
    if failure is not None:
        # A real status, so an SDK raises: the deadline is a gateway timeout, any other end a bad gateway.
        status = 504 if summary.stop_reason == "deadline" else 502
        summary.status = status
        if not failure.retryable:
            # The SDKs retry a 5xx by themselves: not a cancel, nor what would fail the same way again.
            headers = {**headers, "x-should-retry": "false"}
    response = Response(body_bytes, status=status, headers=headers, content_type=writer.content_type)
    response.call_on_close(relay.close)
    return response
