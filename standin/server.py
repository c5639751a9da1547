"""The stand-in's HTTP server: answers ConverseStream as Bedrock does, and records each request."""

from __future__ import annotations

import base64
import hashlib
import json
import select
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from . import eventstream
from .scenarios import (
    ERROR_STATUS,
    Scenario,
    ScenarioError,
    answer_tokens,
    echo_chunks,
    parse,
    reasoning_tokens,
    stamped,
)

PATH_PREFIX, PATH_SUFFIX = "/model/", "/converse-stream"


class ClientClosed(Exception):
    """The caller closed the connection while the stand-in was still answering."""


@dataclass
class Record:
    """What happened to one ConverseStream request, as seen from the Bedrock side."""

    model_id: str
    scenario: dict
    outcome: str = "streaming"  # then complete, error, truncated or client_closed
    tokens_sent: int = 0
    started: float = 0.0
    ended: float | None = None
    # The conversation as Bedrock received it: (role, text) per message; and its inferenceConfig.
    messages: list = field(default_factory=list)
    inference: dict = field(default_factory=dict)
    tool_results: list = field(default_factory=list)  # (toolUseId, text) in the last turn
    # Images and documents as received: message index, kind, format, name, size and SHA-256 of the bytes.
    attachments: list = field(default_factory=list)
    tools: list = field(default_factory=list)  # the toolConfig's tool names
    guardrail: dict = field(default_factory=dict)  # the guardrailConfig, as received
    cache_points: list = field(
        default_factory=list
    )  # where cachePoint blocks were: "system" or a message index


def attachments_of(messages: list) -> list[dict]:
    """Describe each image and document block as Bedrock received it (botocore sends bytes as base64)."""
    found = []
    for index, message in enumerate(messages):
        for block in message["content"]:
            kind = "image" if "image" in block else "document" if "document" in block else None
            if kind:
                raw = base64.b64decode(block[kind]["source"]["bytes"])
                found.append(
                    {
                        "message": index,
                        "kind": kind,
                        "format": block[kind]["format"],
                        "name": block[kind].get("name"),
                        "size": len(raw),
                        "sha256": hashlib.sha256(raw).hexdigest(),
                    }
                )
    return found


class Handler(BaseHTTPRequestHandler):
    """Serves POST /model/{modelId}/converse-stream and GET /_standin/requests."""

    protocol_version = "HTTP/1.1"
    # Send each frame at once, as Bedrock does: Nagle would hold a frame that follows
    # another within the peer's delayed-ACK time (40 ms on Linux).
    disable_nagle_algorithm = True
    server: StandInServer

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        if self.path != "/_standin/requests":
            return self._error(404, "UnknownOperationException", f"no such path {self.path}")
        body = json.dumps([asdict(record) for record in self.server.records]).encode()
        self._send(200, "application/json", body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not (self.path.startswith(PATH_PREFIX) and self.path.endswith(PATH_SUFFIX)):
            return self._error(404, "UnknownOperationException", f"no such operation {self.path}")
        model_id = unquote(self.path[len(PATH_PREFIX) : -len(PATH_SUFFIX)])
        try:
            request = json.loads(body)
            messages = request["messages"]
            # The tag is in the latest text that has one: a turn that answers a tool call holds none.
            texts = [block["text"] for m in reversed(messages) for block in m["content"] if "text" in block]
            prompt = next((text for text in texts if "[standin" in text), texts[0])
            scenario = parse(prompt, self.server.defaults)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return self._error(400, "ValidationException", f"stand-in: {exc!r}")
        record = Record(model_id, asdict(scenario), started=time.monotonic())
        record.messages = [(m.get("role"), (m.get("content") or [{}])[0].get("text")) for m in messages]
        record.inference = request.get("inferenceConfig") or {}
        last = messages[-1]["content"]
        record.tool_results = [
            (b["toolResult"]["toolUseId"], b["toolResult"]["content"][0]["text"])
            for b in last
            if "toolResult" in b
        ]
        record.attachments = attachments_of(messages)
        record.tools = [t["toolSpec"]["name"] for t in request.get("toolConfig", {}).get("tools", [])]
        record.guardrail = request.get("guardrailConfig") or {}
        record.extra = request.get("additionalModelRequestFields") or {}
        record.cache_points = [
            ("system" if where is None else where, block["cachePoint"])
            for where, blocks in [
                (None, request.get("system", [])),
                *enumerate(m["content"] for m in messages),
            ]
            for block in blocks
            if "cachePoint" in block
        ]
        self.server.records.append(record)
        if scenario.error:
            record.outcome, record.ended = "error", time.monotonic()
            return self._error(
                ERROR_STATUS[scenario.error],
                scenario.error,
                f"stand-in acted out {scenario.error}",
                {"Retry-After": str(scenario.retry_after)} if scenario.retry_after else None,
            )
        try:
            self._stream(request, scenario, record)
        except (ClientClosed, ConnectionError):
            record.outcome = "client_closed"
            self.close_connection = True
        record.ended = time.monotonic()

    def _stream(self, request: dict, scenario: Scenario, record: Record) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self._chunk(eventstream.event("messageStart", {"role": "assistant"}))
        self._wait(scenario.ttft)
        index = 0
        if scenario.reasoning:
            for text in reasoning_tokens(scenario):
                self._delta(index, {"reasoningContent": {"text": text}})
            self._chunk(eventstream.event("contentBlockStop", {"contentBlockIndex": index}))
            index = 1
        for _ in range(scenario.redacted):
            # Encrypted reasoning arrives whole, as bytes (base64 in the event's JSON).
            encrypted = base64.b64encode(b"\x8f\x02 encrypted reasoning").decode()
            self._delta(index, {"reasoningContent": {"redactedContent": encrypted}})
            self._chunk(eventstream.event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        max_tokens = request.get("inferenceConfig", {}).get("maxTokens")
        if scenario.text == "echo":
            last = next(b.get("text", "") for b in request["messages"][-1]["content"] if "text" in b)
            echoed = echo_chunks(last)
            scenario = replace(scenario, tokens=len(echoed))
        count = min(scenario.tokens, max_tokens or scenario.tokens)
        prompt_words = sum(
            len(block.get("text", "").split()) for m in request["messages"] for block in m["content"]
        )
        started = time.monotonic()
        if scenario.guardrail == "input":
            return self._guardrail_stop(record, "inputAssessment", index, 0, prompt_words)
        tokens = (
            echoed[:count]
            if scenario.text == "echo"
            else answer_tokens(scenario, count, json.dumps(request["messages"]))
        )
        for i, text in enumerate(tokens):
            if scenario.guardrail == "output" and i == scenario.after:
                return self._guardrail_stop(record, "outputAssessments", index, i, prompt_words)
            if i == scenario.after and self._interrupt(scenario, record):
                return
            if scenario.tps:
                self._wait(started + i / scenario.tps - time.monotonic())
            if scenario.stamp:
                text = stamped(text, i, time.monotonic())
            self._delta(index, {"text": text})
            record.tokens_sent += 1
        if count <= scenario.after and self._interrupt(scenario, record):
            return
        self._chunk(eventstream.event("contentBlockStop", {"contentBlockIndex": index}))
        stop = "max_tokens" if count < scenario.tokens else "end_turn"
        if scenario.tool and not record.tool_results and scenario.tool in record.tools:
            self._call_tool(index + 1, scenario.tool)
            stop = "tool_use"
        self._chunk(eventstream.event("messageStop", {"stopReason": stop}))
        usage = {"inputTokens": prompt_words, "outputTokens": count, "totalTokens": prompt_words + count}
        if scenario.cached:
            usage["cacheReadInputTokens"] = scenario.cached
        elif record.cache_points:
            usage["cacheWriteInputTokens"] = prompt_words  # a first call writes what it asked to cache
        latency = round((time.monotonic() - record.started) * 1000)
        self._chunk(eventstream.event("metadata", {"usage": usage, "metrics": {"latencyMs": latency}}))
        self._end()
        record.outcome = "complete"

    def _guardrail_stop(self, record: Record, where: str, index: int, sent: int, prompt_words: int) -> None:
        """End as Bedrock does when a guardrail intervenes, with its trace if the request asked for one."""
        self._chunk(eventstream.event("contentBlockStop", {"contentBlockIndex": index}))
        self._chunk(eventstream.event("messageStop", {"stopReason": "guardrail_intervened"}))
        blocked = {
            "contentPolicy": {"filters": [{"type": "VIOLENCE", "confidence": "HIGH", "action": "BLOCKED"}]}
        }
        guardrail_id = record.guardrail.get("guardrailIdentifier", "")
        assessment = blocked if where == "inputAssessment" else [blocked]
        metadata: dict = {
            "usage": {"inputTokens": prompt_words, "outputTokens": sent, "totalTokens": prompt_words + sent},
            "metrics": {"latencyMs": round((time.monotonic() - record.started) * 1000)},
        }
        if record.guardrail.get("trace") == "enabled":
            metadata["trace"] = {"guardrail": {where: {guardrail_id: assessment}}}
        self._chunk(eventstream.event("metadata", metadata))
        self._end()
        record.outcome = "complete"

    def _call_tool(self, index: int, name: str) -> None:
        """Call a tool as Bedrock does: a toolUse block whose input arrives as JSON fragments."""
        start = {
            "contentBlockIndex": index,
            "start": {"toolUse": {"toolUseId": f"tooluse_{uuid.uuid4().hex[:12]}", "name": name}},
        }
        self._chunk(eventstream.event("contentBlockStart", start))
        document = json.dumps({"city": "Zürich", "unit": "celsius"})
        for piece in (document[:9], document[9:20], document[20:]):
            self._delta(index, {"toolUse": {"input": piece}})
        self._chunk(eventstream.event("contentBlockStop", {"contentBlockIndex": index}))

    def _interrupt(self, scenario: Scenario, record: Record) -> bool:
        """Act out a silence, an in-stream exception or a truncation; True if the stream is over."""
        if scenario.silence:
            self._wait(scenario.silence)
        if scenario.stream_error:
            self._chunk(
                eventstream.exception(scenario.stream_error, f"stand-in acted out {scenario.stream_error}")
            )
            record.outcome = "error"
        elif scenario.truncate == "midframe":
            frame = eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "cut"}})
            self._chunk(frame[: len(frame) // 2])
            record.outcome = "truncated"
        elif scenario.truncate == "clean":
            record.outcome = "truncated"
        else:
            return False
        self._end()
        return True

    def _delta(self, index: int, delta: dict) -> None:
        self._chunk(eventstream.event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _wait(self, seconds: float) -> None:
        """Sleep, but notice at once if the caller hangs up meanwhile."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], remaining)
            if readable:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        raise ClientClosed
                except ConnectionError:
                    raise ClientClosed from None
                time.sleep(min(remaining, 0.05))

    def _send(self, status: int, content_type: str, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        body = json.dumps({"message": message}).encode()
        error_type = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/"}
        self._send(status, "application/json", body, {**error_type, **(headers or {})})


class StandInServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the defaults and the record of every request."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], defaults: Scenario | None = None, verbose: bool = False):
        super().__init__(address, Handler)
        self.defaults = defaults or Scenario()
        self.verbose = verbose
        self.records: list[Record] = []

    def handle_error(self, request: object, client_address: object) -> None:
        # A caller hanging up between requests is normal; anything else is a bug worth seeing.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandInServer:
        """Serve on a background thread and return self."""
        threading.Thread(target=self.serve_forever, name="standin", daemon=True).start()
        return self


def validate_defaults(scenario: Scenario) -> Scenario:
    """Check the server-wide defaults the same way as a prompt's tag."""
    try:
        return scenario.check()
    except ScenarioError as exc:
        raise SystemExit(f"stand-in: {exc}") from None
