"""Streams kept in the store: GET /chat/{streamId} resumes one, POST /chat/{streamId}/cancel stops it."""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, g, jsonify, request

from . import formats, invocation
from .chat_api import negotiate, respond
from .errors import Refusal, log_answered, store_unavailable
from .invocation import owner
from .logs import RequestLog
from .peer import Peer
from .relay import Relay
from .replay import NOT_RESUMABLE, Replay
from .settings import Settings
from .store import LIVE, Store, StoreError
from .validation import excerpt

bp = Blueprint("streams", __name__)
STREAM_ID = re.compile(r"[A-Za-z0-9-]{1,128}")
DELTA_ID = re.compile(r"[0-9]{1,12}")  # ASCII digits: str.isdigit() takes "²" too
NO_SUCH_STREAM = "no such stream: it is unknown, expired, or not yours"


def _store() -> Store:
    return current_app.extensions["store"]


def _meta(stream_id: str) -> dict:
    """Return the caller's stream, or refuse: someone else's stream is as unknown as a made-up id."""
    try:
        meta = _store().meta(stream_id, owner()) if STREAM_ID.fullmatch(stream_id) else None
    except StoreError:
        raise store_unavailable() from None
    if meta is None:
        raise Refusal(404, "not_found", NO_SUCH_STREAM)
    return meta


def _after() -> int:
    """The last delta the client has: `Last-Event-ID` (what EventSource sends), or `?after=N`."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    if not DELTA_ID.fullmatch(raw):
        name = "Last-Event-ID" if request.headers.get("Last-Event-ID") else "after"
        raise Refusal(400, "invalid_request", f"'{name}' must be a delta id (0 or more), got {excerpt(raw)}")
    return int(raw)


@bp.get("/chat/<stream_id>")
def resume(stream_id: str) -> Response:
    """Replay a stream after the client's last delta, then follow it live to its end."""
    settings: Settings = current_app.extensions["settings"]
    media_type = negotiate()
    after = _after()
    meta = _meta(stream_id)
    if meta["lost"]:
        raise Refusal(410, NOT_RESUMABLE, "the stream was not stored whole and cannot be resumed")
    g.log_fields = {**g.log_fields, "format": media_type, "modelId": meta["modelId"], "streamId": stream_id}
    g.log_fields["resumedAfter"] = after
    writer = formats.WRITERS[media_type](g.request_id, meta["modelId"], {"streamId": stream_id})
    replay = Replay(
        _store(), stream_id, after, meta["liveUntil"], poll_seconds=settings.persist_interval_ms / 1000
    )
    relay = Relay(
        replay,
        writer,
        started=g.started,
        deadline=invocation.deadline(settings),
        heartbeat_seconds=settings.heartbeat_seconds,
        peer=Peer.of(request.environ.get("gunicorn.socket"), settings.client_write_timeout_seconds),
        listeners=[RequestLog(requestId=g.request_id, path=request.path, **g.log_fields)],
    )
    return respond(relay, media_type, {"X-Stream-Id": stream_id})


@bp.post("/chat/<stream_id>/cancel")
def cancel(stream_id: str) -> tuple[Response, int]:
    """Ask the stream's generator, in whichever process it runs, to stop; idempotent."""
    meta = _meta(stream_id)
    try:
        cancelling = meta["state"] == LIVE and _store().cancel(stream_id)
        end = None if cancelling else _store().end(stream_id)
    except StoreError:
        raise store_unavailable() from None
    body = {"streamId": stream_id, "state": "cancelling" if cancelling else "ended"}
    if end is not None:
        body |= {"stopReason": end["stopReason"], "outcome": end["outcome"]}
    status = 202 if cancelling else 200
    log_answered(status, body["state"], streamId=stream_id)
    return jsonify(body), status
