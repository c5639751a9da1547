"""OpenAI's wire formats for one stream: chat.completion.chunk events, or one chat.completion."""

from __future__ import annotations

import json
import time

from .events import CANCELLED, DEADLINE, Delta, Failure, Summary, Text, Tool, ToolUse

# Bedrock's stopReason as OpenAI's finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def error_object(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict:
    """Return OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def failure_of(summary: Summary) -> Failure | None:
    """What ends a stream as a failure for an OpenAI client: an error, the deadline, or a cancel."""
    if summary.failure:
        return summary.failure
    if summary.stop_reason == DEADLINE:
        return Failure(DEADLINE, "the stream reached its time limit and was stopped", True)
    if summary.stop_reason == CANCELLED:
        return Failure(CANCELLED, "the stream was cancelled", False)
    return None


def usage_of(summary: Summary) -> dict | None:
    usage = summary.usage
    if usage is None:
        return None
    counts: dict = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cache_read_tokens is not None:
        counts["prompt_tokens_details"] = {"cached_tokens": usage.cache_read_tokens}
    return counts


class _Completion:
    """What both formats know: the completion's id, creation time and model."""

    def __init__(self, request_id: str, model_id: str) -> None:
        self.id = f"chatcmpl-{request_id}"
        self.created = int(time.time())
        self.model = model_id


class ChunkWriter(_Completion):
    """SSE `data:` chunks; `[DONE]` only after a clean end, an error object after any other."""

    content_type = "text/event-stream; charset=utf-8"
    ping = b": ping\n\n"
    failure_status = 200

    def __init__(self, request_id: str, model_id: str, include_usage: bool) -> None:
        super().__init__(request_id, model_id)
        self.include_usage = include_usage
        self._calls: dict[int, int] = {}  # content block index -> tool call index
        self._with_input: set[int] = set()  # tool calls that got some input
        # Every chunk opens the same way; only the delta and finish_reason differ.
        self._head = (
            f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{self.created},'
            f'"model":{_dumps(model_id)},"choices":[{{"index":0,"delta":'
        )

    def _chunk(self, delta: str, finish: str = "null") -> bytes:
        return f'{self._head}{delta},"logprobs":null,"finish_reason":{finish}}}]}}\n\n'.encode(
            errors="replace"
        )

    def start(self) -> bytes:
        return self._chunk('{"role":"assistant","content":""}')

    def delta(self, event: Delta) -> bytes:
        key = "content" if type(event) is Text else "reasoning_content"
        return self._chunk(f'{{"{key}":{_dumps(event.text)}}}')

    def tool(self, event: Tool) -> bytes:
        if type(event) is ToolUse:
            # OpenAI numbers tool calls from 0; Bedrock numbers content blocks, text included.
            self._calls[event.index] = len(self._calls)
            call = {
                "index": self._calls[event.index],
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
        else:
            call = {"index": self._calls.get(event.index, 0), "function": {"arguments": event.fragment}}
            self._with_input.add(call["index"])
        return self._chunk(_dumps({"tool_calls": [call]}))

    def end(self, summary: Summary) -> bytes:
        failure = failure_of(summary)
        if failure is not None:
            # Never [DONE]: an SDK must not take a cut answer for a whole one.
            error = error_object(failure.message, "server_error", None, failure.code)
            return f"data: {_dumps(error)}\n\n".encode(errors="replace")
        finish = FINISH_REASONS.get(summary.stop_reason or "", "stop")
        out = b""
        for index in self._calls.values():
            if index not in self._with_input:
                # A call without input has the arguments "{}", as OpenAI's have, for json.loads.
                out += self._chunk(
                    _dumps({"tool_calls": [{"index": index, "function": {"arguments": "{}"}}]})
                )
        out += self._chunk("{}", f'"{finish}"')
        if self.include_usage:
            usage = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage_of(summary),
            }
            out += f"data: {_dumps(usage)}\n\n".encode()
        return out + b"data: [DONE]\n\n"


class CompletionWriter(_Completion):
    """One chat.completion once the stream has ended, or an error with a real status."""

    content_type = "application/json"
    ping = None
    failure_status = 502

    def __init__(self, request_id: str, model_id: str) -> None:
        super().__init__(request_id, model_id)
        self._parts: dict[type, list[str]] = {Text: [], object: []}
        self._calls: dict[int, dict] = {}
        self._arguments: dict[int, list[str]] = {}

    def start(self) -> bytes:
        return b""

    def delta(self, event: Delta) -> bytes:
        self._parts[Text if type(event) is Text else object].append(event.text)
        return b""

    def tool(self, event: Tool) -> bytes:
        if type(event) is ToolUse:
            self._calls[event.index] = {"id": event.id, "type": "function", "function": {"name": event.name}}
            self._arguments[event.index] = []
        elif event.index in self._arguments:
            self._arguments[event.index].append(event.fragment)
        return b""

    def _joined(self, index: int) -> str:
        # A call without input has the arguments "{}", as OpenAI's have, for json.loads.
        return "".join(self._arguments[index]) or "{}"

    def end(self, summary: Summary) -> bytes:
        failure = failure_of(summary)
        if failure is not None:
            return _dumps(error_object(failure.message, "server_error", None, failure.code)).encode()
        text = "".join(self._parts[Text])
        # A message that only calls tools has no content, as OpenAI's have.
        content = (text or None) if self._calls else text
        message: dict = {"role": "assistant", "content": content, "refusal": None}
        if self._calls:
            message["tool_calls"] = [
                {**call, "function": {**call["function"], "arguments": self._joined(index)}}
                for index, call in self._calls.items()
            ]
        reasoning = "".join(self._parts[object])
        if reasoning:
            message["reasoning_content"] = reasoning
        completion = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": FINISH_REASONS.get(summary.stop_reason or "", "stop"),
                }
            ],
            "usage": usage_of(summary),
        }
        return _dumps(completion).encode()
