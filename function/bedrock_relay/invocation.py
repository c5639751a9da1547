"""What an invocation tells the app: the request's id, the time it must end by, and whose it is."""

from __future__ import annotations

import json
import re
import time
import uuid

from flask import current_app, g, request

from .intake import INTAKE_KEY
from .settings import Settings

# Lambda request ids are UUIDs; anything else from the header is not echoed into a response header.
REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,128}")


def identify() -> None:
    """Name the request: Lambda's request id when LWA forwards one, else a fresh uuid."""
    g.started = time.monotonic()
    g.context = _lambda_context()
    lambda_id = g.context.get("request_id")
    valid = isinstance(lambda_id, str) and REQUEST_ID.fullmatch(lambda_id)
    g.request_id = lambda_id if valid else str(uuid.uuid4())
    # The server's account of the wait for a thread (queueMs, threadsBusy, ...) joins the log line.
    g.log_fields = dict(request.environ.get(INTAKE_KEY) or {})


def wall_clock(moment: float) -> float:
    """Return a monotonic moment (a deadline) as epoch seconds, for another process to compare."""
    return time.time() + (moment - time.monotonic())


def owner() -> str:
    """Return who owns what this request starts or touches: the signed-in principal, or nobody."""
    method = g.get("log_fields", {}).get("authMethod")
    principal = g.get("principal")
    # Without sign-in, the random id itself is the capability.
    return f"{method}:{principal}" if principal else "-"


def _lambda_context() -> dict:
    """Read the invocation context LWA forwards; empty when running outside Lambda."""
    if not current_app.extensions["settings"].lambda_function_name:
        return {}
    try:
        context = json.loads(request.headers.get("x-amzn-lambda-context", "{}"))
    except ValueError:
        return {}
    return context if isinstance(context, dict) else {}


def deadline(settings: Settings) -> float:
    """Return the monotonic time to end the stream: before Lambda's deadline, within the cap."""
    end = g.started + settings.max_stream_seconds
    lambda_deadline_ms = g.context.get("deadline")
    if isinstance(lambda_deadline_ms, (int, float)) and not isinstance(lambda_deadline_ms, bool):
        remaining = lambda_deadline_ms / 1000 - time.time()
        end = min(end, time.monotonic() + remaining - settings.deadline_margin_seconds)
    return end
