"""Keeps a live stream in the store: its deltas in batches off the token path, its end, its cancel."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .events import Event, Reasoning, Summary, Text
from .relay import Listener
from .store import Store, StoreError, end_record

logger = logging.getLogger(__name__)

# A cancel is looked for at most this often: one strongly consistent read, whether or not it writes.
CANCEL_CHECK_SECONDS = 1.0
# After a failed write the next waits longer, doubling to this.
MAX_BACKOFF_SECONDS = 4.0
# The end is stored before the client gets it; a store that is down may hold it back this long.
FINAL_WRITE_SECONDS = 2.0
# A stream that was not stored whole is marked so, retried for about a minute.
MARK_LOST_ATTEMPTS = 16


class Recorder(Listener):
    """Stores one stream as it is relayed; tells the stream to stop when someone cancels it."""

    def __init__(
        self,
        store: Store,
        stream_id: str,
        opening: dict,
        interval: float,
        interrupt: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.stream_id = stream_id
        self.opening = opening  # open_stream's arguments: owner, model_id, live_until
        self._opened = False
        self.interval = interval
        self.interrupt = interrupt
        self.clock = clock
        self.lost = False  # True once events could not be stored: readers are told so
        self.stored = False  # True once the stream is stored whole, its end included
        self.writes = 0  # DynamoDB requests made, for the log line and the bench
        self._pending: list[Event] = []
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one flush at a time, in order
        self._stop = threading.Event()
        self._retry_at = 0.0
        self._failures = 0
        self._last_seq = 0
        self._thread: threading.Thread | None = None
        self._ended = False

    def start(self) -> None:
        """Start the flusher thread."""
        self._thread = threading.Thread(target=self._run, name="stream-recorder", daemon=True)
        self._thread.start()

    def on_events(self, events: list[Event]) -> None:
        # The response thread's whole cost: one lock and a list extend per batch.
        with self._pending_lock:
            self._pending.extend(events)

    def _open(self) -> bool:
        """Record the stream, off the response thread; a failure is retried at the next flush."""
        if not self._opened:
            try:
                self.store.open_stream(self.stream_id, **self.opening)
            except StoreError as exc:
                logger.warning("stream %s: not recorded yet: %s", self.stream_id, exc)
                return False
            self.writes += 1
            self._opened = True
        return True

    def _run(self) -> None:
        self._open()
        next_check = self.clock() + CANCEL_CHECK_SECONDS
        while not self._stop.wait(self.interval):
            if not self._open():
                continue
            self._flush()
            if self.clock() >= next_check:
                next_check = self.clock() + CANCEL_CHECK_SECONDS
                if self._cancelled():
                    self.interrupt()
                    return

    def _cancelled(self) -> bool:
        try:
            self.writes += 1
            return self.store.cancelled(self.stream_id)
        except StoreError as exc:
            logger.warning("stream %s: cannot check for a cancel: %s", self.stream_id, exc)
            return False

    def _flush(self, final: bool = False) -> bool:
        """Write what has arrived since the last flush; on failure keep it for the next. True if stored."""
        with self._write_lock:
            if not final and self.clock() < self._retry_at:
                return False
            with self._pending_lock:
                events, self._pending = self._pending, []
            deltas = [event for event in events if type(event) is Text or type(event) is Reasoning]
            if not deltas:
                return True
            try:
                self.store.append(self.stream_id, deltas)
            except StoreError as exc:
                with self._pending_lock:
                    self._pending[:0] = deltas  # in order, ahead of anything newer
                self._failures += 1
                self._retry_at = self.clock() + min(MAX_BACKOFF_SECONDS, 0.25 * 2**self._failures)
                logger.warning("stream %s: events not stored yet: %s", self.stream_id, exc)
                return False
            self.writes += 1
            self._failures = 0
            self._last_seq = deltas[-1].seq
            return True

    def on_end(self, summary: Summary) -> None:
        """Store everything left and the end, before the client is sent the end (bounded in time)."""
        self._ended = True
        self._stop.set()
        # One budget for all of it: the deadline margin must still cover the end's delivery.
        give_up = self.clock() + FINAL_WRITE_SECONDS
        if self._thread is not None:
            self._thread.join(timeout=FINAL_WRITE_SECONDS)
        while True:
            if self._open() and self._flush(final=True):
                try:
                    self.store.finish(self.stream_id, end_record(summary, self._last_seq))
                    self.stored = True
                    self.writes += 2
                    summary.store_requests = (summary.store_requests or 0) + self.writes
                    return
                except StoreError as exc:
                    logger.warning("stream %s: its end not stored yet: %s", self.stream_id, exc)
            if self.clock() >= give_up:
                break
            time.sleep(0.2)
        self.lost = True
        summary.store_requests = (summary.store_requests or 0) + self.writes
        logger.error("stream %s: not stored whole; readers will be told it cannot be resumed", self.stream_id)

    def on_close(self, summary: Summary) -> None:  # noqa: ARG002 - the listener interface
        self._stop.set()
        # A stream that never reached its end (it failed, or never started) is not whole either.
        if self.lost or not self._ended:
            self.lost = True
            threading.Thread(target=self._mark_lost, name="stream-recorder", daemon=True).start()

    def _mark_lost(self) -> None:
        """Tell later readers the stream is not whole, once the store is back (for a while)."""
        for attempt in range(MARK_LOST_ATTEMPTS):
            try:
                self.store.mark_lost(self.stream_id)
                return
            except StoreError:
                time.sleep(min(MAX_BACKOFF_SECONDS, 0.25 * 2**attempt))
        # Readers still learn it once the stream's time is up and no end was stored.
