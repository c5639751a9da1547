"""Reads an upstream on its own thread into a bounded queue, so the response can beat and watch the clock."""

from __future__ import annotations

import contextlib
import logging
import threading
from queue import Empty, SimpleQueue

from .events import Failure, Upstream

logger = logging.getLogger(__name__)

# Events held for a response that is not keeping up. Past this the reader stops reading,
# so a client that stops reading leaves the upstream's own flow control to push back. Large
# enough that a full-speed stream seldom waits (each wait is a thread switch), small enough
# that a stalled client holds about 100 KB.
CAPACITY = 1024
END = object()  # the last item of every stream, after its last event

_IDLE, _READING, _DONE, _CANCELLED = "idle", "reading", "done", "cancelled"


class Pump:
    """Moves one upstream's events to the response thread, in batches of whatever has arrived."""

    def __init__(self, upstream: Upstream, capacity: int = CAPACITY):
        self._upstream = upstream
        self._capacity = capacity
        # The events travel through a SimpleQueue, whose C code is the fast path. The bound is kept
        # by comparing what the reader put with what the response took, and a Condition used only
        # when the queue is full.
        self._queue: SimpleQueue = SimpleQueue()
        self._taken_count = 0  # written by the response thread; the reader counts what it put
        self._room = threading.Condition(threading.Lock())
        self._reader_waiting = False
        self._state = _IDLE

    def start(self) -> None:
        """Start the reader thread, unless the pump was cancelled first."""
        with self._room:
            if self._state is not _IDLE:
                return
            self._state = _READING
        threading.Thread(target=self._read, name="upstream-reader", daemon=True).start()

    def _read(self) -> None:
        # The per-token path: a count, a comparison, a state check and the C queue's put.
        put, capacity, sent = self._queue.put, self._capacity, 0
        try:
            for event in self._upstream:
                if sent - self._taken_count >= capacity:
                    self._wait_for_room(sent)
                if self._state is _CANCELLED:
                    return
                sent += 1
                put(event)
        except Exception as exc:
            # Closing the upstream under the reader can surface odd errors; only report real ones.
            if self._state is not _CANCELLED:
                logger.exception("reading the upstream failed")
                sent = self._put(
                    sent, Failure("internal_error", f"reading the upstream failed: {exc}", False)
                )
        finally:
            with self._room:
                if self._state is _READING:
                    # The upstream is spent: its connection may already serve another stream.
                    self._state = _DONE
            self._put(sent, END)

    def _put(self, sent: int, item: object) -> int:
        """Queue one item, waiting for room, unless cancelled; return the new count."""
        if sent - self._taken_count >= self._capacity:
            self._wait_for_room(sent)
        if self._state is _CANCELLED:
            return sent
        self._queue.put(item)
        return sent + 1

    def _wait_for_room(self, sent: int) -> None:
        """Wait until the response has taken enough to make room, or the pump is cancelled."""
        with self._room:
            self._reader_waiting = True
            while sent - self._taken_count >= self._capacity and self._state is not _CANCELLED:
                self._room.wait()
            self._reader_waiting = False

    def get(self, timeout: float) -> list | None:
        """Wait up to `timeout` for the next item, then take everything queued with it; None if none came."""
        try:
            batch = [self._queue.get(timeout=timeout)]
        except Empty:
            return None
        # Coalesce only what the upstream got ahead with: never wait to fill a batch.
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except Empty:
                break
        self._taken_count += len(batch)
        # The count changes before the flag is read, and the reader sets the flag before it counts
        # again: a reader about to wait either sees the room or is woken.
        if self._reader_waiting:
            with self._room:
                self._room.notify()
        return batch

    def interrupt(self, event: object) -> None:
        """Hand the response one last event from another thread (a cancel), then the end; thread-safe."""
        self._queue.put(event)
        self._queue.put(END)

    def cancel(self) -> None:
        """Stop reading and close the upstream, so no more tokens are generated; idempotent."""
        with self._room:
            state, self._state = self._state, _CANCELLED
            self._room.notify_all()
        # A finished upstream is left alone: closing it could cut a pooled connection now in other use.
        if state is _IDLE or state is _READING:
            with contextlib.suppress(Exception):
                self._upstream.close()
