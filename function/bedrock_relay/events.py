"""The service's own stream events, translated from Bedrock's and written by the wire formats."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of the answer text."""

    text: str


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A piece of the model's reasoning, kept apart from the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Stop:
    """The model finished its message, for the given reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts and Bedrock's latency, sent after the message stops."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    latency_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """The stream broke: a Bedrock exception, a read timeout, or a truncated stream."""

    code: str
    message: str
    retryable: bool


@dataclass(slots=True)
class Summary:
    """What a finished stream amounted to, for the `end` event and the log line."""

    stop_reason: str | None = None
    usage: Usage | None = None
    ttft_ms: int | None = None
    duration_ms: int | None = None

    def usage_dict(self) -> dict[str, int] | None:
        """Return token counts in the API's camelCase shape; None if Bedrock never sent them."""
        if self.usage is None:
            return None
        return {
            "inputTokens": self.usage.input_tokens,
            "outputTokens": self.usage.output_tokens,
            "totalTokens": self.usage.total_tokens,
        }


Event = Text | Reasoning | Stop | Usage | Failure
