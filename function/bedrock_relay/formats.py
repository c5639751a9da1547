"""The native API's wire formats: how a stream is written for text, SSE, NDJSON and JSON clients."""

from __future__ import annotations

import json

from .events import DEADLINE, GUARDRAIL_INTERVENED, Delta, Failure, Reasoning, Summary, Text, Tool

TEXT = "text/plain"
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
JSON = "application/json"

# The order breaks ties for `Accept: */*`: plain text suits curl best.
MEDIA_TYPES = (TEXT, SSE, NDJSON, JSON)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def document(data: dict) -> bytes:
    """Return a whole JSON response body exactly as Flask's jsonify writes it, error bodies included."""
    return (json.dumps(data, ensure_ascii=True, sort_keys=True, separators=(",", ":")) + "\n").encode()


def error_body(code: str, message: str) -> dict:
    """Return the one error shape of the native API, for refusals and failed JSON answers alike."""
    return {"error": {"code": code, "message": message}}


def end_data(summary: Summary) -> dict:
    """Return the `end` event's data, shared by every format that has one."""
    data = {
        "stopReason": summary.stop_reason,
        "usage": summary.usage_dict(),
        "metrics": {"ttftMs": summary.ttft_ms, "durationMs": summary.duration_ms},
    }
    if summary.cached:
        data["cached"] = True
    if summary.reasoning_redacted:
        # The model reasoned in blocks its provider encrypted: said, so none seems silently lost.
        data["reasoningRedacted"] = summary.reasoning_redacted
    return data


def guardrail_data(summary: Summary) -> dict | None:
    """The `guardrail` event's data when a guardrail stopped the stream: where, and by which policies."""
    if summary.stop_reason != GUARDRAIL_INTERVENED:
        return None
    guardrail = summary.guardrail
    return {
        "action": "INTERVENED",
        "source": guardrail.source if guardrail else None,
        "policies": list(guardrail.policies) if guardrail else [],
    }


def error_data(failure: Failure) -> dict:
    """Return the `error` event's data."""
    return {"code": failure.code, "message": failure.message, "retryable": failure.retryable}


class NativeWriter:
    """What every native format knows of its stream: whose request it is and which model answers."""

    # A streamed format's status goes out with its first bytes: a later failure is in-band.
    failure_status = 200

    def __init__(self, request_id: str, model_id: str, ids: dict | None = None) -> None:
        self.request_id = request_id
        self.model_id = model_id
        # With the store on: the streamId to resume or cancel by, the conversationId, and `cached`.
        self.ids = ids or {}

    def start_data(self) -> dict:
        """Return the `start` event's data."""
        return {"requestId": self.request_id, "modelId": self.model_id, **self.ids}

    def tool(self, event: Tool) -> bytes:  # noqa: ARG002 - the writer interface
        """The native API sends no tools, so a tool call is not written."""
        return b""


class TextWriter(NativeWriter):
    """Raw answer text; an abnormal end adds one last `[error] ` line."""

    content_type = "text/plain; charset=utf-8"
    ping = None
    _at_line_start = True

    def start(self) -> bytes:
        return b""

    def delta(self, event: Delta) -> bytes:
        # Reasoning is never mixed into the answer a curl user reads.
        if type(event) is not Text:
            return b""
        self._at_line_start = event.text.endswith("\n")
        return event.text.encode(errors="replace")

    def end(self, summary: Summary) -> bytes:
        if summary.failure:
            return self._error_line(summary.failure.code, summary.failure.message)
        if summary.stop_reason == DEADLINE:
            return self._error_line(DEADLINE, "the stream reached its time limit and was stopped")
        guardrail = guardrail_data(summary)
        if guardrail is not None:
            where = f" on the {guardrail['source']}" if guardrail["source"] else ""
            policies = f" ({', '.join(guardrail['policies'])})" if guardrail["policies"] else ""
            return self._error_line(GUARDRAIL_INTERVENED, f"a guardrail blocked the answer{where}{policies}")
        return b""

    def _error_line(self, code: str, message: str) -> bytes:
        prefix = "" if self._at_line_start else "\n"
        return f"{prefix}[error] {code}: {message}\n".encode(errors="replace")


class SseWriter(NativeWriter):
    """Server-sent events: start, token, reasoning, end and error, with `: ping` comments."""

    content_type = "text/event-stream; charset=utf-8"
    ping = b": ping\n\n"

    def start(self) -> bytes:
        return self._event("start", self.start_data())

    def delta(self, event: Delta) -> bytes:
        text = _dumps(event.text)
        return f'id: {event.seq}\nevent: {event.kind}\ndata: {{"text":{text}}}\n\n'.encode(errors="replace")

    def end(self, summary: Summary) -> bytes:
        if summary.failure:
            return self._event("error", error_data(summary.failure))
        guardrail = guardrail_data(summary)
        head = self._event("guardrail", guardrail) if guardrail is not None else b""
        return head + self._event("end", end_data(summary))

    @staticmethod
    def _event(name: str, data: dict) -> bytes:
        return f"event: {name}\ndata: {_dumps(data)}\n\n".encode(errors="replace")


class NdjsonWriter(NativeWriter):
    """One JSON object per line, with a `type` field; the same events as SSE."""

    content_type = "application/x-ndjson; charset=utf-8"
    ping = b'{"type":"ping"}\n'

    def start(self) -> bytes:
        return self._line({"type": "start", **self.start_data()})

    def delta(self, event: Delta) -> bytes:
        line = f'{{"type":"{event.kind}","id":{event.seq},"text":{_dumps(event.text)}}}\n'
        return line.encode(errors="replace")

    def end(self, summary: Summary) -> bytes:
        if summary.failure:
            return self._line({"type": "error", **error_data(summary.failure)})
        guardrail = guardrail_data(summary)
        head = self._line({"type": "guardrail", **guardrail}) if guardrail is not None else b""
        return head + self._line({"type": "end", **end_data(summary)})

    @staticmethod
    def _line(data: dict) -> bytes:
        return (_dumps(data) + "\n").encode(errors="replace")


class JsonWriter(NativeWriter):
    """The whole answer at once: writes nothing until the end, then one JSON document."""

    content_type = "application/json"
    ping = None
    failure_status = 502

    def __init__(self, request_id: str, model_id: str, ids: dict | None = None) -> None:
        super().__init__(request_id, model_id, ids)
        self._parts: dict[str, list[str]] = {Text.kind: [], Reasoning.kind: []}

    def start(self) -> bytes:
        return b""

    def delta(self, event: Delta) -> bytes:
        self._parts[event.kind].append(event.text)
        return b""

    def end(self, summary: Summary) -> bytes:
        """Return the answer, or the native error shape if the stream failed (sent with a 502)."""
        if summary.failure:
            return document(error_body(summary.failure.code, summary.failure.message))
        answer = {
            "text": "".join(self._parts[Text.kind]),
            "reasoning": "".join(self._parts[Reasoning.kind]) or None,
            **end_data(summary),
            # This client reads no start event: what it carries is here.
            **{key: self.ids[key] for key in ("streamId", "conversationId") if key in self.ids},
        }
        return document(answer)


WRITERS = {TEXT: TextWriter, SSE: SseWriter, NDJSON: NdjsonWriter, JSON: JsonWriter}
