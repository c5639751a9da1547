"""GET /diag/stream: a streaming self-test that calls no model, to find which hop buffers a stream."""

from __future__ import annotations

import json
import re
import time

from flask import Blueprint, Response, current_app, g, request

from .chat_api import STREAM_HEADERS
from .errors import Refusal
from .events import CLIENT_DISCONNECTED, COMPLETE
from .logs import log_request

bp = Blueprint("diag", __name__)
# Some hops (older proxies, a browser sniffing text) hold the first kilobytes back; a pad fills them.
MAX_PAD_BYTES = 8192
WHOLE = re.compile(r"[0-9]{1,5}")


def _argument(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not WHOLE.fullmatch(raw) or not low <= int(raw) <= high:
        raise Refusal(400, "invalid_request", f"'{name}' must be a whole number from {low} to {high}")
    return int(raw)


@bp.get("/diag/stream")
def stream() -> Response:
    """Send one small timestamped NDJSON line a second for `seconds`, after an optional pad."""
    # Long enough to tell a stream from a lump, short enough that a self-test holds a thread briefly.
    longest = current_app.extensions["settings"].diag_max_seconds
    seconds = _argument("seconds", min(5, longest), 1, longest)
    pad = _argument("pad", 0, 0, MAX_PAD_BYTES)
    # Taken now: the request's context is gone by the time the stream ends.
    fields = {"requestId": g.request_id, "path": request.path, **g.get("log_fields", {}), "api": "diag"}
    began, sent = g.started, {"last": False}

    def lines():
        if pad:
            yield (json.dumps({"pad": " " * pad}) + "\n").encode()
        started = time.monotonic()
        for seq in range(seconds + 1):
            # On a schedule from the start, so the gaps a client sees are the hops', not ours.
            time.sleep(max(0.0, started + seq - time.monotonic()))
            line = {"seq": seq, "sentAt": round(time.time() * 1000, 1), "last": seq == seconds}
            yield (json.dumps(line) + "\n").encode()
        sent["last"] = True

    def log() -> None:
        outcome = COMPLETE if sent["last"] else CLIENT_DISCONNECTED
        duration = round((time.monotonic() - began) * 1000)
        log_request(**fields, status=200, outcome=outcome, durationMs=duration, seconds=seconds)

    response = Response(lines(), headers=STREAM_HEADERS, content_type="application/x-ndjson; charset=utf-8")
    response.call_on_close(log)
    return response
