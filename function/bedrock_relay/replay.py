"""A stored stream read back as a relay source: what is stored after a given delta, then what follows."""

from __future__ import annotations

import time
from collections.abc import Callable

from .events import Ended, Failure, Usage
from .pump import END
from .store import Store, StoreError

NOT_RESUMABLE = "not_resumable"
# A stream whose generator should have ended this long ago, with no end stored, never will.
LIVE_GRACE_SECONDS = 10.0


class Replay:
    """A relay source over the store: each get() reads what is new, or waits a little for it."""

    def __init__(
        self,
        store: Store,
        stream_id: str,
        after: int,
        live_until: float,
        poll_seconds: float,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.stream_id = stream_id
        self.after = after  # the last delta the reader has
        self.live_until = live_until
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.reads = 0

    def start(self) -> None:
        """Nothing to start: reading happens in get()."""

    def cancel(self) -> None:
        """A reader leaving does not stop the stream it reads."""

    def get(self, timeout: float) -> list | None:
        """Return the deltas stored since the last call (and the end, once stored); None if none yet."""
        try:
            self.reads += 1
            batches, end = self.store.read(self.stream_id, self.after)
        except StoreError as exc:
            return [Failure("store_unavailable", f"the stream store cannot be read: {exc}", True), END]
        events: list = []
        for batch in batches:
            for delta in batch:
                if delta.seq != self.after + 1:
                    if delta.seq <= self.after:
                        continue  # a batch that began before the reader's place
                    break  # a gap: what follows is not stored yet
                events.append(delta)
                self.after = delta.seq
        if end is not None and self.after >= end["lastSeq"]:
            return [*events, _ended(end), END]
        if end is not None or self.clock() > self.live_until + LIVE_GRACE_SECONDS:
            failure = Failure(NOT_RESUMABLE, "the stream was not stored whole and cannot be resumed", False)
            return [*events, failure, END]
        if events:
            return events
        time.sleep(min(timeout, self.poll_seconds))
        return None


def _ended(record: dict) -> Ended:
    usage, failure = record["usage"], record["failure"]
    return Ended(
        record["stopReason"],
        Usage(*usage) if usage else None,
        record["ttftMs"],
        record["durationMs"],
        Failure(*failure) if failure else None,
    )
