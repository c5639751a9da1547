"""One structured JSON log line per request; prompt and answer text never reach it."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from .events import Summary
from .metrics import embed
from .relay import Listener

logger = logging.getLogger("bedrock_relay.requests")
NO_USAGE = {"inputTokens": None, "outputTokens": None, "totalTokens": None}
# The CloudWatch namespace request lines declare their metrics in; empty, they declare none.
_metrics = {"namespace": ""}


class JsonLines(logging.Formatter):
    """Every other log record as one JSON line, a traceback as one of its fields: CloudWatch
    would make each line of a bare traceback an event of its own."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "event": "log",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        return json.dumps(fields, separators=(",", ":"))


def init_logging(metrics_namespace: str = "") -> None:
    """Send request lines to stdout as bare JSON, which CloudWatch Logs indexes as is, and every
    other record (a crash's traceback among them) as JSON too."""
    _metrics["namespace"] = metrics_namespace
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    root = logging.getLogger()
    if not root.handlers:  # a test runner's own capture comes first
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines())
        root.addHandler(handler)


def log_event(event: str, **fields: object) -> None:
    """Write one JSON line; callers pass only metadata, never text."""
    # CloudWatch stamps each line, but locally the lines sit among gunicorn's own: say when.
    time = datetime.now(UTC).isoformat(timespec="milliseconds")
    logger.info(json.dumps({"time": time, "event": event, **fields}, separators=(",", ":")))


def log_request(**fields: object) -> None:
    """Write one request's outcome; with a metrics namespace, in Embedded Metric Format."""
    if _metrics["namespace"]:
        fields = embed(fields, _metrics["namespace"], int(datetime.now(UTC).timestamp() * 1000))
    log_event("request", **fields)


class RequestLog(Listener):
    """Writes a stream's line once its response has ended, so the client's end never waits for it."""

    def __init__(self, **fields: object):
        self.fields = fields

    def on_close(self, summary: Summary) -> None:
        failure = summary.failure
        log_request(
            **self.fields,
            status=summary.status,
            outcome=summary.outcome,
            stopReason=summary.stop_reason,
            ttftMs=summary.ttft_ms,
            durationMs=summary.duration_ms,
            **(summary.usage_dict() or NO_USAGE),
            # Counted by the relay, so a cut stream still shows how much was generated (usage is then null).
            deltas=summary.deltas,
            # With the store on, a client that left does not stop the answer: it is finished unseen.
            clientGone=summary.client_gone,
            **(
                {"guardrail": {"source": g.source, "policies": list(g.policies)}}
                if (g := summary.guardrail)
                else {}
            ),
            **({"storeRequests": summary.store_requests} if summary.store_requests is not None else {}),
            **({"reasoningRedacted": summary.reasoning_redacted} if summary.reasoning_redacted else {}),
            errorCode=failure.code if failure else None,
            errorMessage=failure.message if failure else None,
        )
