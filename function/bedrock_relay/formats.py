"""The wire formats: how each service event is written for text, SSE, NDJSON and JSON clients."""

from __future__ import annotations

import json

from .events import Failure, Summary

TEXT = "text/plain"
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
JSON = "application/json"

# The order breaks ties for `Accept: */*`: plain text suits curl best.
MEDIA_TYPES = (TEXT, SSE, NDJSON, JSON)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def end_data(summary: Summary) -> dict:
    """Return the `end` event's data, shared by every format that has one."""
    return {
        "stopReason": summary.stop_reason,
        "usage": summary.usage_dict(),
        "metrics": {"ttftMs": summary.ttft_ms, "durationMs": summary.duration_ms},
    }


def error_data(failure: Failure) -> dict:
    """Return the `error` event's data."""
    return {"code": failure.code, "message": failure.message, "retryable": failure.retryable}


class TextWriter:
    """Raw answer text; an abnormal end adds one last `[error] ` line."""

    content_type = "text/plain; charset=utf-8"
    ping = None

    def __init__(self) -> None:
        self._at_line_start = True

    def start(self, request_id: str, model_id: str) -> bytes:
        return b""

    def text(self, seq: int, text: str) -> bytes:
        self._at_line_start = text.endswith("\n")
        return text.encode(errors="replace")

    def reasoning(self, seq: int, text: str) -> bytes:
        # Reasoning is never mixed into the answer a curl user reads.
        return b""

    def end(self, summary: Summary) -> bytes:
        if summary.stop_reason == "deadline":
            return self._error_line("deadline", "the stream reached its time limit and was stopped")
        return b""

    def error(self, failure: Failure) -> bytes:
        return self._error_line(failure.code, failure.message)

    def _error_line(self, code: str, message: str) -> bytes:
        prefix = "" if self._at_line_start else "\n"
        self._at_line_start = True
        return f"{prefix}[error] {code}: {message}\n".encode(errors="replace")


class SseWriter:
    """Server-sent events: start, token, reasoning, end and error, with `: ping` comments."""

    content_type = "text/event-stream; charset=utf-8"
    ping = b": ping\n\n"

    def start(self, request_id: str, model_id: str) -> bytes:
        return self._event("start", {"requestId": request_id, "modelId": model_id})

    def text(self, seq: int, text: str) -> bytes:
        return f'id: {seq}\nevent: token\ndata: {{"text":{_dumps(text)}}}\n\n'.encode(errors="replace")

    def reasoning(self, seq: int, text: str) -> bytes:
        return f'id: {seq}\nevent: reasoning\ndata: {{"text":{_dumps(text)}}}\n\n'.encode(errors="replace")

    def end(self, summary: Summary) -> bytes:
        return self._event("end", end_data(summary))

    def error(self, failure: Failure) -> bytes:
        return self._event("error", error_data(failure))

    @staticmethod
    def _event(name: str, data: dict) -> bytes:
        return f"event: {name}\ndata: {_dumps(data)}\n\n".encode(errors="replace")


class NdjsonWriter:
    """One JSON object per line, with a `type` field; the same events as SSE."""

    content_type = "application/x-ndjson; charset=utf-8"
    ping = b'{"type":"ping"}\n'

    def start(self, request_id: str, model_id: str) -> bytes:
        return self._line({"type": "start", "requestId": request_id, "modelId": model_id})

    def text(self, seq: int, text: str) -> bytes:
        return f'{{"type":"token","id":{seq},"text":{_dumps(text)}}}\n'.encode(errors="replace")

    def reasoning(self, seq: int, text: str) -> bytes:
        return f'{{"type":"reasoning","id":{seq},"text":{_dumps(text)}}}\n'.encode(errors="replace")

    def end(self, summary: Summary) -> bytes:
        return self._line({"type": "end", **end_data(summary)})

    def error(self, failure: Failure) -> bytes:
        return self._line({"type": "error", **error_data(failure)})

    @staticmethod
    def _line(data: dict) -> bytes:
        return (_dumps(data) + "\n").encode(errors="replace")


class JsonCollector:
    """The whole answer at once: keeps every piece and writes nothing until `answer()`."""

    content_type = "application/json"
    ping = None

    def __init__(self) -> None:
        self.text_parts: list[str] = []
        self.reasoning_parts: list[str] = []

    def start(self, request_id: str, model_id: str) -> bytes:
        return b""

    def text(self, seq: int, text: str) -> bytes:
        self.text_parts.append(text)
        return b""

    def reasoning(self, seq: int, text: str) -> bytes:
        self.reasoning_parts.append(text)
        return b""

    def end(self, summary: Summary) -> bytes:
        return b""

    def error(self, failure: Failure) -> bytes:
        return b""

    def answer(self, summary: Summary) -> dict:
        """Return the JSON answer's fields once the stream has ended."""
        return {
            "text": "".join(self.text_parts),
            "reasoning": "".join(self.reasoning_parts) or None,
            **end_data(summary),
        }


WRITERS = {TEXT: TextWriter, SSE: SseWriter, NDJSON: NdjsonWriter, JSON: JsonCollector}
