"""The two readers compared: an HTTP client of the relay, and a direct boto3 reader (the floor)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .stamps import Arrival, StampReader, stamp_of

MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
# What a successful stream ends with, per format; an error event replaces it.
# OPENAI is not a media type: it names the OpenAI-compatible route, read as its SSE chunks.
OPENAI = "openai"
END_MARKERS = {
    "text/plain": b"0\r\n\r\n",
    "text/event-stream": b"event: end",
    "application/x-ndjson": b'"type":"end"',
    OPENAI: b"data: [DONE]",
}


def prompt(tokens: int, tps: float, ttft: float = 0.0, label: str = "bench") -> str:
    """Return a prompt asking the stand-in for a stamped stream of this shape."""
    return f"{label} [standin tokens={tokens} tps={tps:g} ttft={ttft:g} stamp=1]"


@dataclass
class StreamResult:
    """What one reader saw of one stream."""

    sent: float
    tokens: int
    arrivals: list[Arrival] = field(default_factory=list)
    first_byte: float | None = None
    ended: float | None = None
    ok: bool = False

    @property
    def complete(self) -> bool:
        """Every token arrived once, in order, and the stream ended cleanly."""
        return self.ok and [a.index for a in self.arrivals] == list(range(self.tokens))

    @property
    def added(self) -> list[float]:
        return [a.added for a in self.arrivals]


class RelayStream:
    """One POST /chat on a raw socket, so the client adds as little as possible to what it measures."""

    def __init__(self, url: str, accept: str, prompt_text: str, tokens: int, headers: dict | None = None):
        parts = urlsplit(url)
        path, media_type, request = "/chat", accept, {"prompt": prompt_text}
        if accept == OPENAI:
            path, media_type = "/v1/chat/completions", "text/event-stream"
            request = {
                "model": MODEL_ID,
                "stream": True,
                "messages": [{"role": "user", "content": prompt_text}],
            }
        body = json.dumps(request).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: {media_type}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
            + "\r\n"
        )
        self.accept = accept
        self.sock = socket.create_connection((parts.hostname, parts.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.result = StreamResult(sent=time.monotonic(), tokens=tokens)
        self._reader = StampReader()
        self._head = b""
        self._tail = b""
        self.sock.sendall(head.encode() + body)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> bool:
        """Read what has arrived; False once the response is over."""
        data = self.sock.recv(1 << 18)
        now = time.monotonic()
        if not data:
            self._finish(now)
            return False
        if self.result.first_byte is None:
            self.result.first_byte = now
        if len(self._head) < 64:
            self._head += data[:64]
        self._tail = (self._tail + data)[-4096:]
        self._reader.feed(data, now)
        return True

    def run(self) -> StreamResult:
        """Read the whole response, blocking."""
        while self.read():
            pass
        return self.result

    def _finish(self, now: float) -> None:
        self.sock.close()
        self.result.ended = now
        self.result.arrivals = self._reader.arrivals
        self.result.ok = (
            self._head.startswith(b"HTTP/1.1 200")
            and self._tail.endswith(b"0\r\n\r\n")
            and END_MARKERS[self.accept] in self._tail
            and b"[error]" not in self._tail
        )


def stalled_request(url: str, prompt_text: str) -> socket.socket:
    """Ask the relay for a stream and never read it: the socket's small buffers fill at once."""
    parts = urlsplit(url)
    body = json.dumps({"prompt": prompt_text}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname, parts.port))
    head = f"POST /chat HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock


def relay_stream(
    url: str, accept: str, prompt_text: str, tokens: int, headers: dict | None = None
) -> StreamResult:
    """Run one stream through the relay and return what arrived when."""
    return RelayStream(url, accept, prompt_text, tokens, headers).run()


def direct_client(bedrock_url: str) -> Any:
    """Build the boto3 client the floor reads with: the same library the relay uses, no relay."""
    import boto3
    from botocore.config import Config

    config = Config(read_timeout=900, retries={"mode": "standard", "max_attempts": 1}, tcp_keepalive=True)
    return boto3.session.Session().client(
        "bedrock-runtime", endpoint_url=bedrock_url, region_name="us-east-1", config=config
    )


def direct_stream(client: Any, prompt_text: str, tokens: int) -> StreamResult:
    """Read one stream straight from the stand-in with boto3: the floor the relay is measured against."""
    result = StreamResult(sent=time.monotonic(), tokens=tokens)
    response = client.converse_stream(
        modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": prompt_text}]}]
    )
    stopped = False
    for event in response["stream"]:
        now = time.monotonic()
        if result.first_byte is None:
            result.first_byte = now
        delta = event.get("contentBlockDelta", {}).get("delta", {})
        if "text" in delta:
            arrival = stamp_of(delta["text"], now)
            if arrival:
                result.arrivals.append(arrival)
        elif "metadata" in event:
            stopped = True
    result.ended = time.monotonic()
    result.ok = stopped
    return result
