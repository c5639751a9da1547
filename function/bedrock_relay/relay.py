"""Moves one stream's events from Bedrock to the client: heartbeats, the deadline, disconnects."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from queue import Empty, SimpleQueue
from typing import Any

from .bedrock import close_stream, translate
from .events import Failure, Reasoning, Stop, Summary, Text, Usage

logger = logging.getLogger(__name__)

# How often a silent stream checks whether its client is still there.
PEER_CHECK_SECONDS = 1.0
_END = object()


def peer_closed(sock: socket.socket | None) -> bool:
    """Tell whether the client closed its connection, without reading or writing."""
    if sock is None:
        return False
    # Poll first: with a socket timeout set, recv() waits for data despite MSG_DONTWAIT.
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    if not poller.poll(0):
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class Pump:
    """Reads a Bedrock stream on its own thread, so the response can beat and watch the clock."""

    def __init__(self, stream: Any):
        self._stream = stream
        self._queue: SimpleQueue = SimpleQueue()
        self._cancelled = False
        threading.Thread(target=self._run, name="bedrock-reader", daemon=True).start()

    def _run(self) -> None:
        try:
            for event in translate(self._stream):
                if self._cancelled:
                    return
                self._queue.put(event)
        except Exception as exc:
            # Closing the stream under the reader can surface odd errors; only report real ones.
            if not self._cancelled:
                logger.exception("reading the Bedrock stream failed")
                self._queue.put(Failure("internal_error", f"reading the Bedrock stream failed: {exc}", False))
        finally:
            self._queue.put(_END)

    def get(self, timeout: float) -> list | None:
        """Wait for the next event, then take whatever else is already waiting; None on timeout."""
        try:
            batch = [self._queue.get(timeout=timeout)]
        except Empty:
            return None
        # Coalesce only what the model got ahead of us with: never wait to fill a batch.
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except Empty:
                return batch

    def cancel(self) -> None:
        """Stop reading and close the Bedrock connection, so no more tokens are billed."""
        if not self._cancelled:
            self._cancelled = True
            with contextlib.suppress(Exception):
                close_stream(self._stream)


class Relay:
    """One request's stream: its events written by a wire format, its outcome logged once."""

    def __init__(
        self,
        pump: Pump,
        writer: Any,
        *,
        start: bytes,
        started: float,
        deadline: float,
        heartbeat_seconds: float,
        client: socket.socket | None,
        on_finish: Callable[[Relay], None],
    ):
        self.pump = pump
        self.writer = writer
        self.start = start
        self.started = started
        self.deadline = deadline
        self.heartbeat_seconds = heartbeat_seconds
        self.client = client
        self.on_finish = on_finish
        self.summary = Summary()
        self.failure: Failure | None = None
        self.outcome = "client_disconnected"
        self._seq = 0  # text and reasoning deltas relayed so far
        self._finished = False

    def _handle(self, event: Any) -> bytes:
        """Apply one event to the summary and return its bytes on the wire."""
        if type(event) is Text:
            if self.summary.ttft_ms is None:
                self.summary.ttft_ms = ms_since(self.started)
            self._seq += 1
            return self.writer.text(self._seq, event.text)
        if type(event) is Reasoning:
            self._seq += 1
            return self.writer.reasoning(self._seq, event.text)
        if type(event) is Stop:
            self.summary.stop_reason = event.reason
        elif type(event) is Usage:
            self.summary.usage = event
        elif type(event) is Failure:
            self.failure = event
        return b""

    def _bound_writes(self) -> None:
        """Let a write to a client that stopped reading fail at the deadline instead of hanging."""
        if self.client is not None:
            with contextlib.suppress(OSError):
                self.client.settimeout(max(0.1, self.deadline - time.monotonic() + 1))

    def events(self) -> Iterator[bytes]:
        """Yield the response body chunk by chunk until the stream ends, fails or runs out of time."""
        writer = self.writer
        ping = writer.ping
        original_timeout = self.client.gettimeout() if self.client is not None else None
        last_write = last_check = time.monotonic()
        try:
            self._bound_writes()
            if self.start:
                yield self.start
            while True:
                now = time.monotonic()
                if now >= self.deadline:
                    self.pump.cancel()
                    self.summary.stop_reason = "deadline"
                    self.outcome = "deadline"
                    self.summary.duration_ms = ms_since(self.started)
                    yield writer.end(self.summary)
                    return
                if now - last_check >= PEER_CHECK_SECONDS:
                    # Checked on a timer, not only in silences: a JSON or reasoning phase writes nothing.
                    last_check = now
                    if peer_closed(self.client):
                        return
                wait = min(self.deadline - now, PEER_CHECK_SECONDS - (now - last_check))
                if ping:
                    wait = min(wait, last_write + self.heartbeat_seconds - now)
                batch = self.pump.get(max(0.0, wait))
                if batch is None:
                    if ping and time.monotonic() - last_write >= self.heartbeat_seconds:
                        last_write = time.monotonic()
                        yield ping
                    continue
                ended = batch[-1] is _END
                chunk = b"".join([self._handle(event) for event in batch if event is not _END])
                if ended:
                    self.summary.duration_ms = ms_since(self.started)
                    self.outcome = "error" if self.failure else "complete"
                    chunk += writer.error(self.failure) if self.failure else writer.end(self.summary)
                if chunk:
                    last_write = time.monotonic()
                    yield chunk
                if ended:
                    return
        finally:
            if self.client is not None:
                with contextlib.suppress(OSError):
                    self.client.settimeout(original_timeout)
            self.close()

    @property
    def deltas(self) -> int:
        """How many text and reasoning deltas reached this relay: what was generated, even if cut."""
        return self._seq

    def close(self) -> None:
        """Stop Bedrock and log the outcome, once; also called if the body was never iterated."""
        if self._finished:
            return
        self._finished = True
        self.pump.cancel()
        if self.summary.duration_ms is None:
            self.summary.duration_ms = ms_since(self.started)
        self.on_finish(self)

    def run_to_end(self) -> None:
        """Run the whole stream for a writer that answers once, at the end."""
        for _ in self.events():
            pass


def ms_since(start: float) -> int:
    """Milliseconds from a time.monotonic() reading until now."""
    return round((time.monotonic() - start) * 1000)
