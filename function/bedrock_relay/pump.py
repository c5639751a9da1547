"""Reads an upstream on its own thread into a bounded queue, so the response can beat and watch the clock."""

from __future__ import annotations

import contextlib
import logging
import threading
from queue import Empty, SimpleQueue

from .events import Failure, Upstream

logger = logging.getLogger(__name__)

# Events held for a response that is not keeping up. Past this the reader stops reading,
# so a client that stops reading leaves the upstream's own flow control to push back.
CAPACITY = 256
END = object()  # the last item of every stream, after its last event

_IDLE, _READING, _DONE, _CANCELLED = "idle", "reading", "done", "cancelled"


class Pump:
    """Moves one upstream's events to the response thread, in batches of whatever has arrived."""

    def __init__(self, upstream: Upstream, capacity: int = CAPACITY):
        self._upstream = upstream
        self._capacity = capacity
        # The events travel through a SimpleQueue, whose C code is the fast path. The bound is kept
        # by two counters, each written by one thread only, and a Condition used only when full.
        self._queue: SimpleQueue = SimpleQueue()
        self._put_count = 0  # written by the reader
        self._taken_count = 0  # written by the response thread
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
        try:
            for event in self._upstream:
                if not self._put(event):
                    return
        except Exception as exc:
            # Closing the upstream under the reader can surface odd errors; only report real ones.
            if self._state is not _CANCELLED:
                logger.exception("reading the upstream failed")
                self._put(Failure("internal_error", f"reading the upstream failed: {exc}", False))
        finally:
            with self._room:
                if self._state is _READING:
                    # The upstream is spent: its connection may already serve another stream.
                    self._state = _DONE
            self._put(END)

    def _put(self, item: object) -> bool:
        """Queue one item, waiting while the queue is full; False once the pump is cancelled."""
        if self._put_count - self._taken_count >= self._capacity:
            with self._room:
                self._reader_waiting = True
                while self._put_count - self._taken_count >= self._capacity:
                    if self._state is _CANCELLED:
                        break
                    self._room.wait()
                self._reader_waiting = False
        if self._state is _CANCELLED:
            return False
        self._put_count += 1
        self._queue.put(item)
        return True

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

    def cancel(self) -> None:
        """Stop reading and close the upstream, so no more tokens are generated; idempotent."""
        with self._room:
            state, self._state = self._state, _CANCELLED
            self._room.notify_all()
        # A finished upstream is left alone: closing it could cut a pooled connection now in other use.
        if state is _IDLE or state is _READING:
            with contextlib.suppress(Exception):
                self._upstream.close()
