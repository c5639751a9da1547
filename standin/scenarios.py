"""What the stand-in acts out for one request, chosen by a `[standin key=value ...]` tag in the prompt."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace

TAG = re.compile(r"\[standin((?:\s+[a-z_]+=[^\s\]]+)*)\s*\]")
# With `stamp=1` each answer delta ends with `<index@emit time>`, on time.monotonic(): one
# clock for every process on the machine, so a reader can measure arrival minus emit.
STAMP = re.compile(r"<(\d+)@(\d+\.\d+)>")

# HTTP status Bedrock answers with for each error converse_stream() can raise.
ERROR_STATUS = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
STREAM_ERRORS = (
    "internalServerException",
    "modelStreamErrorException",
    "validationException",
    "throttlingException",
    "serviceUnavailableException",
)

_LOREM_TEXT = (
    "Streaming keeps the reader close to the model: each token leaves as soon as it exists, "
    "so the first words arrive while the rest of the answer is still being written. A relay "
    "that buffers would hide this, and a long answer would look like a stalled request. The "
    "stand-in speaks the same event stream as Bedrock, frame by frame, with checksums that the "
    "real client verifies before it hands over a single event."
)
_REASONING_TEXT = "First I consider the question, then I check each step before answering."
_LOREM = tuple(_LOREM_TEXT.split())
_REASONING = tuple(_REASONING_TEXT.split())
# Multi-byte characters of every UTF-8 length, combining marks and a ZWJ emoji sequence.
_UNICODE = (
    "héllo",
    "日本語の",
    "テキスト",
    "😀",
    "🚀✨",
    "Ωμέγα",
    "naïve",
    "e\u0301clair",
    "中文",
    "👩\u200d💻",
    "ß",
)


class ScenarioError(ValueError):
    """A `[standin ...]` tag names an unknown key or a bad value."""


@dataclass(frozen=True)
class Scenario:
    """One request's behaviour: pace, length, content, and what goes wrong where."""

    tokens: int = 60  # answer length, unless maxTokens is lower
    tps: float = 30.0  # tokens per second; 0 writes as fast as possible
    ttft: float = 0.4  # seconds before the first token
    reasoning: int = 0  # reasoning deltas before the answer
    redacted: int = 0  # then this many reasoning blocks the provider encrypted (redactedContent)
    text: str = "lorem"  # or "unicode": multi-byte characters and emoji; or "echo" (see echo_chunks)
    error: str = ""  # fail before streaming with this exception
    retry_after: int = 0  # with `error`: send this Retry-After header, as Bedrock may when throttling
    stream_error: str = ""  # raise this exception in the stream, after `after` tokens
    truncate: str = ""  # "clean" or "midframe": end the stream early, after `after` tokens
    silence: float = 0.0  # pause this many seconds after `after` tokens
    after: int = 0
    stamp: int = 0  # 1: end each answer delta with its index and emit time (see STAMP)
    tool: str = ""  # after the text, call this tool of the request's (unless the last turn answers one)
    cached: int = 0  # report this many input tokens read from the prompt cache
    guardrail: str = ""  # "input" or "output" (after `after` tokens): a guardrail intervenes
    id: str = ""  # a label, so a test can find its request in the stand-in's records

    def check(self) -> Scenario:
        """Reject values the stand-in cannot act out."""
        if self.error and self.error not in ERROR_STATUS:
            raise ScenarioError(f"error must be one of {', '.join(ERROR_STATUS)}")
        if self.stream_error and self.stream_error not in STREAM_ERRORS:
            raise ScenarioError(f"stream_error must be one of {', '.join(STREAM_ERRORS)}")
        if self.truncate not in ("", "clean", "midframe"):
            raise ScenarioError("truncate must be clean or midframe")
        if self.guardrail not in ("", "input", "output"):
            raise ScenarioError("guardrail must be input or output")
        if self.text not in ("lorem", "unicode", "echo"):
            raise ScenarioError("text must be lorem, unicode or echo")
        return self


def parse(prompt: str, defaults: Scenario) -> Scenario:
    """Return the scenario a prompt asks for: its tag's values over the server's defaults."""
    match = TAG.search(prompt)
    if not match:
        return defaults
    types = {field.name: field.type for field in fields(Scenario)}
    values = {}
    for pair in match.group(1).split():
        key, _, raw = pair.partition("=")
        if key not in types:
            raise ScenarioError(f"unknown key {key!r}; known: {', '.join(types)}")
        try:
            values[key] = {"int": int, "float": float}.get(types[key], str)(raw)
        except ValueError:
            raise ScenarioError(f"{key} must be a number, got {raw!r}") from None
    return replace(defaults, **values).check()


def answer_tokens(scenario: Scenario, count: int, seed: str) -> Iterator[str]:
    """Yield the answer token by token, the same every time for the same prompt."""
    vocabulary = _UNICODE if scenario.text == "unicode" else _LOREM
    start = random.Random(seed).randrange(len(vocabulary))
    for i in range(count):
        word = vocabulary[(start + i) % len(vocabulary)]
        yield word if i == 0 else " " + word


# With text=echo the answer is the prompt after its tag, a few characters a delta: a test writes
# the answer it wants (Markdown, say), and every construct in it arrives split across deltas.
ECHO_CHUNK = 3


def echo_chunks(prompt: str) -> list[str]:
    """Return the answer `text=echo` sends for a prompt: what follows its tag, in small pieces."""
    match = TAG.search(prompt)
    text = prompt[match.end() :] if match else prompt
    text = text.removeprefix("\n")
    return [text[i : i + ECHO_CHUNK] for i in range(0, len(text), ECHO_CHUNK)]


def stamped(text: str, index: int, emitted: float) -> str:
    """Return an answer delta carrying its index and emit time, as STAMP reads them."""
    return f"{text}<{index}@{emitted:.6f}>"


def reasoning_tokens(scenario: Scenario) -> list[str]:
    """Return the reasoning deltas sent before the answer."""
    return [_REASONING[i % len(_REASONING)] + " " for i in range(scenario.reasoning)]
