"""The service's own stream events, the upstream that yields them, and the summary of a finished stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

# Events are named tuples: one is built per token, and a tuple is the cheapest immutable record
# to build and to define (a frozen dataclass costs ten times as much at import, on the cold path).


class Text(NamedTuple):
    """A piece of the answer text; `seq` numbers the stream's deltas from 1."""

    seq: int
    text: str
    kind = "token"


class Reasoning(NamedTuple):
    """A piece of the model's reasoning, kept apart from the answer; numbered with the text."""

    seq: int
    text: str
    kind = "reasoning"


class RedactedReasoning(NamedTuple):
    """A block of reasoning its provider encrypted: counted and reported as such, never shown."""

    size: int  # bytes of encrypted content


class ToolUse(NamedTuple):
    """The model starts a call of one of the request's tools, in content block `index`."""

    index: int
    id: str
    name: str


class ToolInput(NamedTuple):
    """A fragment of a tool call's input, a JSON text whose fragments join into one document."""

    index: int
    fragment: str


class Guardrail(NamedTuple):
    """A guardrail intervened: on the input or the output, by these policies (from its trace)."""

    source: str
    policies: tuple[str, ...]


class Stop(NamedTuple):
    """The model finished its message, for the given reason."""

    reason: str


class Usage(NamedTuple):
    """Token counts and the upstream's latency, sent after the message stops."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    latency_ms: int | None = None
    # Prompt caching: input tokens read from, and written to, the cache, when Bedrock reports them.
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None


class Failure(NamedTuple):
    """The stream broke: an upstream exception, a read timeout, a truncation or a crash."""

    code: str
    message: str
    retryable: bool


class Interrupt(NamedTuple):
    """Stop now, for this reason (a cancel from another process): the stream ends with it."""

    reason: str


class Ended(NamedTuple):
    """A stored stream's end, replayed: the reader ends exactly as the original did."""

    stop_reason: str | None
    usage: Usage | None
    ttft_ms: int | None
    duration_ms: int | None
    failure: Failure | None


Delta = Text | Reasoning
Tool = ToolUse | ToolInput
Event = (
    Text
    | Reasoning
    | RedactedReasoning
    | ToolUse
    | ToolInput
    | Guardrail
    | Stop
    | Usage
    | Failure
    | Interrupt
    | Ended
)


class Upstream(Protocol):
    """Where a stream's events come from: iterated by one reader thread, closed from any thread."""

    def __iter__(self) -> Iterator[Event]: ...

    def close(self) -> None:
        """Stop generating at once, waking a reader that is blocked on the upstream."""


# How a stream ended; the log line's `outcome`.
GUARDRAIL_INTERVENED = "guardrail_intervened"  # Bedrock's stopReason when a guardrail blocks
COMPLETE = "complete"
ERROR = "error"
DEADLINE = "deadline"
CLIENT_DISCONNECTED = "client_disconnected"
INTERNAL_ERROR = "internal_error"
CANCELLED = "cancelled"  # also the stopReason of a cancelled stream


@dataclass(slots=True)
class Summary:
    """What a stream amounted to: for the `end` event, the JSON answer and the log line."""

    stop_reason: str | None = None
    usage: Usage | None = None
    ttft_ms: int | None = None
    duration_ms: int | None = None
    outcome: str | None = None
    failure: Failure | None = None
    deltas: int = 0  # text and reasoning deltas relayed: what was generated, even if cut
    status: int | None = None  # the HTTP status the client got; None if it never got one
    client_gone: bool = False  # the client left, and the stream was finished for the store
    store_requests: int | None = None  # DynamoDB requests made to keep the stream, with the store on
    guardrail: Guardrail | None = None  # what the guardrail's trace reported, when it intervened
    reasoning_redacted: int = 0  # reasoning blocks the provider encrypted, which no client can read
    cached: bool = False  # replayed from the answer cache: no model was called

    def usage_dict(self) -> dict[str, int] | None:
        """Return token counts in the API's camelCase shape; None if the upstream never sent them."""
        if self.usage is None:
            return None
        counts = {
            "inputTokens": self.usage.input_tokens,
            "outputTokens": self.usage.output_tokens,
            "totalTokens": self.usage.total_tokens,
        }
        # Prompt caching's counts, when Bedrock reports them.
        if self.usage.cache_read_tokens is not None:
            counts["cacheReadInputTokens"] = self.usage.cache_read_tokens
        if self.usage.cache_write_tokens is not None:
            counts["cacheWriteInputTokens"] = self.usage.cache_write_tokens
        return counts
