"""CloudWatch metrics in the request log line itself (Embedded Metric Format): no API call, no library."""

from __future__ import annotations

from .events import CANCELLED, CLIENT_DISCONNECTED, DEADLINE, ERROR, GUARDRAIL_INTERVENED, INTERNAL_ERROR
from .formats import JSON, NDJSON, SSE, TEXT

# Few dimensions, each of few values: every combination is a metric CloudWatch bills for.
DIMENSIONS = [["api", "modelId", "outcome"], ["api"], []]
# Measured only when the line has them (a refusal has no time to first token).
MEASURES = (
    ("ttftMs", "Milliseconds"),
    ("durationMs", "Milliseconds"),
    ("inputTokens", "Count"),
    ("outputTokens", "Count"),
)
COUNTS = (
    "requests",
    "errors",
    "rejected",
    "throttles",
    "clientDisconnects",
    "cancels",
    "deadlineEnds",
    "guardrailInterventions",
)
# Bedrock throttling, by its own codes: not any 429 (a caller refused by its own limits gets one
# too, and must not raise Bedrock's throttling alarm).
THROTTLED = ("ThrottlingException", "throttlingException", "too_many_requests")
SHORT = {TEXT: "text", SSE: "sse", NDJSON: "ndjson", JSON: "json"}
UNKNOWN = "-"  # a dimension's value must be a string; a request refused early has no model


def api_of(fields: dict) -> str:
    """Name the front door and format a request came by: `chat:sse`, `openai:stream`, `resume:ndjson`."""
    api = fields.get("api")
    if api == "openai":
        return "openai:stream" if fields.get("stream") else "openai:json"
    if api:
        return api  # such as `diag`
    short = SHORT.get(fields.get("format"))
    if short is None:
        return "other"  # a request refused before its format was known, or no stream at all
    return f"{'resume' if 'resumedAfter' in fields else 'chat'}:{short}"


def embed(fields: dict, namespace: str, now_ms: int) -> dict:
    """Return the log line with an `_aws` block that declares its metrics, and their counters."""
    status = fields.get("status") or 0
    outcome, stop_reason = fields.get("outcome"), fields.get("stopReason")
    counts = {
        "requests": 1,
        "errors": int(outcome in (ERROR, INTERNAL_ERROR) or status >= 500),
        "rejected": int(400 <= status < 500),
        "throttles": int(fields.get("errorCode") in THROTTLED),
        "clientDisconnects": int(outcome == CLIENT_DISCONNECTED or bool(fields.get("clientGone"))),
        "cancels": int(outcome == CANCELLED),
        "deadlineEnds": int(stop_reason == DEADLINE),
        "guardrailInterventions": int(stop_reason == GUARDRAIL_INTERVENED),
    }
    line = {
        **fields,
        "api": api_of(fields),
        "modelId": fields.get("modelId") or UNKNOWN,
        "outcome": outcome or UNKNOWN,
        **counts,
    }
    metrics = [{"Name": name, "Unit": "Count"} for name in COUNTS]
    metrics += [
        {"Name": name, "Unit": unit}
        for name, unit in MEASURES
        if type(line.get(name)) in (int, float)  # not a bool, not null
    ]
    directive = {"Namespace": namespace, "Dimensions": DIMENSIONS, "Metrics": metrics}
    return {"_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [directive]}, **line}
