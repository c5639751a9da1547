"""The relay core: one stream's events from a pump to a writer and listeners, within its deadline."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from .events import (
    CANCELLED,
    CLIENT_DISCONNECTED,
    COMPLETE,
    DEADLINE,
    ERROR,
    INTERNAL_ERROR,
    Delta,
    Ended,
    Event,
    Failure,
    Guardrail,
    Interrupt,
    Reasoning,
    RedactedReasoning,
    Stop,
    Summary,
    Text,
    Tool,
    ToolInput,
    ToolUse,
    Usage,
)
from .pump import END

if TYPE_CHECKING:
    from .peer import Peer

logger = logging.getLogger(__name__)

# How often the stream checks whether its client is still there, writing or not.
PEER_CHECK_SECONDS = 1.0
# A write blocked on a client that stopped reading fails this long after the deadline, at most
# a peer check later: the bound is renewed with each check.
WRITE_GRACE_SECONDS = 1.0


class Source(Protocol):
    """What the core reads: a started pump that hands over batches of events."""

    def start(self) -> None: ...

    def get(self, timeout: float) -> list | None: ...

    def cancel(self) -> None: ...


class Writer(Protocol):
    """One wire format: the bytes for the stream's start, each delta, and its end."""

    content_type: str
    ping: bytes | None  # what fills a silence, or None if the format has no heartbeat
    # The status a failed stream is answered with: 200 for a format whose status went out with
    # its first bytes (the error then goes in-band), a real error status for one that waits.
    failure_status: int

    def start(self) -> bytes: ...

    def delta(self, event: Delta) -> bytes: ...

    def tool(self, event: Tool) -> bytes:
        """Return the bytes for a tool call's start or a fragment of its input (b"" to skip it)."""

    def end(self, summary: Summary) -> bytes:
        """Return the last bytes: an end or an error, as `summary.failure` says."""


class Listener:
    """Something besides the writer that follows a stream: the log line now; a store, a cache, metrics."""

    def on_events(self, events: list[Event]) -> None:
        """See each batch as it passes, on the response thread: keep it quick, never block."""

    def on_end(self, summary: Summary) -> None:
        """See the outcome just before the client is sent the end: only what must come first (a store)."""

    def on_close(self, summary: Summary) -> None:
        """See the outcome once the response has ended: slow work belongs here."""


class Relay:
    """One stream: its body, its outcome, and its cleanup."""

    def __init__(
        self,
        source: Source,
        writer: Writer,
        *,
        started: float,
        deadline: float,
        heartbeat_seconds: float,
        peer: Peer | None = None,
        listeners: Sequence[Listener] = (),
        detach: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.source = source
        self.writer = writer
        self.started = started
        self.deadline = deadline
        self.heartbeat_seconds = heartbeat_seconds
        self.peer = peer
        self.listeners = tuple(listeners)
        # With a store, a client that leaves does not stop the answer: it is finished for a resume.
        self.detach = detach
        # Only those that look at events are called per batch: the log line, for one, waits for close.
        self._event_listeners = tuple(
            listener for listener in self.listeners if type(listener).on_events is not Listener.on_events
        )
        self._end_listeners = tuple(
            listener for listener in self.listeners if type(listener).on_end is not Listener.on_end
        )
        self.clock = clock
        self.summary = Summary()
        self._closed = False
        self._finished = False

    def body(self) -> Iterator[bytes]:
        """Yield the response body chunk by chunk until the stream ends, fails or runs out of time."""
        writer, clock, summary = self.writer, self.clock, self.summary
        ping, beat = writer.ping, self.heartbeat_seconds
        try:
            # Started here, inside the try, so no reader runs without the cleanup below.
            self.source.start()
            if self.peer is not None:
                self.peer.bound_writes(self.deadline - clock() + WRITE_GRACE_SECONDS)
            head = writer.start()
            if head:
                self._note_status()
                yield head
            last_write = last_check = clock()
            while True:
                now = clock()
                if now >= self.deadline:
                    self.source.cancel()
                    summary.stop_reason = DEADLINE
                    last = self._finish(DEADLINE)
                    self._note_status()
                    yield last
                    return
                if now - last_check >= PEER_CHECK_SECONDS:
                    # On a timer, not only in silences: a JSON answer or a reasoning phase writes nothing.
                    last_check = now
                    if self.peer is not None:
                        if self.peer.gone():
                            self._client_left()
                            return
                        self.peer.bound_writes(self.deadline - now + WRITE_GRACE_SECONDS)
                wait = min(self.deadline - now, last_check + PEER_CHECK_SECONDS - now)
                if ping:
                    wait = min(wait, last_write + beat - now)
                batch = self.source.get(max(0.0, wait))
                if batch is None:
                    if ping and clock() - last_write >= beat:
                        last_write = clock()
                        yield ping
                    continue
                chunk, ended = self._apply(batch)
                if ended:
                    chunk += self._finish(self._outcome())
                if chunk:
                    last_write = clock()
                    if summary.status is None:
                        self._note_status()
                    yield chunk
                if ended:
                    return
        except GeneratorExit:
            # The server stopped taking the body: its write to the client failed.
            self._client_left()
            raise
        except Exception as exc:
            summary.outcome = INTERNAL_ERROR
            summary.failure = Failure(INTERNAL_ERROR, f"the relay failed: {exc}", False)
            raise
        finally:
            self.source.cancel()

    def _apply(self, batch: list) -> tuple[bytes, bool]:
        """Take a batch into the summary and the listeners; return its bytes and whether it ended."""
        summary, writer = self.summary, self.writer
        ended = batch[-1] is END
        events = batch[:-1] if ended else batch
        out = []
        for index, event in enumerate(events):
            kind = type(event)
            if kind is Text or kind is Reasoning:
                if summary.ttft_ms is None and kind is Text:
                    summary.ttft_ms = self._ms_since_start()
                summary.deltas += 1
                out.append(writer.delta(event))
            elif kind is ToolUse or kind is ToolInput:
                out.append(writer.tool(event))
            elif kind is Stop:
                summary.stop_reason = event.reason
            elif kind is Guardrail:
                summary.guardrail = event
            elif kind is RedactedReasoning:
                summary.reasoning_redacted += 1
            elif kind is Usage:
                summary.usage = event
            elif kind is Failure:
                summary.failure = event
            elif kind is Interrupt:
                # Only an interrupt can follow the upstream's own END in one batch; the stream then
                # ended as it was. Otherwise nothing the reader queued after it is sent.
                upstream_end = next((i for i, e in enumerate(events[:index]) if e is END), None)
                if upstream_end is None:
                    self.source.cancel()
                    summary.stop_reason = event.reason
                events, ended = events[: index if upstream_end is None else upstream_end], True
                break
            elif kind is Ended:
                (summary.stop_reason, summary.usage, summary.ttft_ms, summary.duration_ms) = event[:4]
                summary.failure = event.failure
        if events:
            for listener in self._event_listeners:
                try:
                    listener.on_events(events)
                except Exception:
                    # A broken listener (a store, metrics) must never cut the stream it follows.
                    logger.exception("a stream listener failed; it sees no more of this stream")
                    self._drop(listener)
        return b"".join(out), ended

    def _drop(self, listener: Listener) -> None:
        self.listeners = tuple(other for other in self.listeners if other is not listener)
        self._event_listeners = tuple(other for other in self._event_listeners if other is not listener)
        self._end_listeners = tuple(other for other in self._end_listeners if other is not listener)

    def _note_status(self) -> None:
        """Record the status the first bytes go out with (a streamed format's is 200 whatever follows)."""
        summary = self.summary
        if summary.status is None:
            summary.status = self.writer.failure_status if summary.failure else 200

    def _settle(self, outcome: str) -> None:
        self.summary.outcome = outcome
        if self.summary.duration_ms is None:  # a replayed end brings the original's
            self.summary.duration_ms = self._ms_since_start()

    def _outcome(self) -> str:
        summary = self.summary
        if summary.stop_reason == CANCELLED:
            return CANCELLED
        return ERROR if summary.failure else COMPLETE

    def _finish(self, outcome: str) -> bytes:
        """Settle the outcome, let the listeners that must see the end first see it, and return the end."""
        self._finished = True
        self._settle(outcome)
        for listener in self._end_listeners:
            try:
                listener.on_end(self.summary)
            except Exception:
                logger.exception("a stream listener failed at the end")
        return self.writer.end(self.summary)

    def _client_left(self) -> None:
        """The client is gone: stop, or with a store, finish the answer unseen so a resume can have it."""
        summary = self.summary
        summary.client_gone = True
        if self._finished:
            return  # the end was written (or failed to be): the answer is complete, nothing to finish
        if not self.detach:
            self._settle(CLIENT_DISCONNECTED)
            return
        while True:
            now = self.clock()
            if now >= self.deadline:
                self.source.cancel()
                summary.stop_reason = DEADLINE
                self._finish(DEADLINE)
                return
            batch = self.source.get(min(self.deadline - now, PEER_CHECK_SECONDS))
            if batch is not None and self._apply(batch)[1]:
                self._finish(self._outcome())
                return

    def _ms_since_start(self) -> int:
        return round((self.clock() - self.started) * 1000)

    def run(self) -> bytes:
        """Run the whole stream and return its body at once, for a format that answers at the end."""
        return b"".join(self.body())

    def close(self) -> None:
        """Stop the upstream, give back the socket and tell the listeners; once, after the response."""
        if self._closed:
            return
        self._closed = True
        self.source.cancel()
        if self.peer is not None:
            self.peer.restore()
        summary = self.summary
        if summary.outcome is None:
            # The server never took the body: the client was gone before the first write.
            summary.outcome = CLIENT_DISCONNECTED
        if summary.duration_ms is None:
            summary.duration_ms = self._ms_since_start()
        for listener in self.listeners:
            try:
                listener.on_close(summary)
            except Exception:
                logger.exception("a stream listener failed")
