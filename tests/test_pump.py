"""The reader thread: a bounded queue that pushes back, batches of what arrived, and safe cancels."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from bedrock_relay.events import Text
from bedrock_relay.pump import END, Pump

WAIT = 5.0  # seconds before a test gives up on something that should happen at once


class Upstream:
    """Counts what the reader pulled; can hold the reader after `hold_after` events, and crash."""

    def __init__(self, count: int, hold_after: int | None = None, crash_after: int | None = None):
        self.count, self.hold_after, self.crash_after = count, hold_after, crash_after
        self.pulled = 0
        self.held = threading.Event()
        self.release = threading.Event()
        self.closes = 0

    def __iter__(self):
        for i in range(self.count):
            if i == self.hold_after:
                self.held.set()
                self.release.wait(WAIT)
            if i == self.crash_after:
                raise RuntimeError("the upstream broke")
            self.pulled += 1
            yield Text(i + 1, f"t{i}")

    def close(self) -> None:
        self.closes += 1
        self.release.set()


def until(condition, what: str) -> None:
    end = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.001)


def drain(pump: Pump) -> list:
    items: list = []
    while not items or items[-1] is not END:
        batch = pump.get(WAIT)
        assert batch is not None, "the pump went silent before its end"
        items.extend(batch)
    return items


def test_a_reader_ahead_of_the_response_stops_at_the_capacity():
    upstream = Upstream(10_000)
    pump = Pump(upstream, capacity=8)
    pump.start()
    # Eight queued, and the ninth pulled and waiting for room.
    until(lambda: upstream.pulled == 9, "the reader filling the queue")
    time.sleep(0.1)  # room for an unbounded reader to run on, which this one must not
    assert upstream.pulled == 9
    assert len(pump.get(0)) == 8
    # Room for eight more: the ninth goes in, seven more follow, and the seventeenth waits.
    until(lambda: upstream.pulled == 17, "the reader going on once there is room")
    pump.cancel()


def test_cancel_wakes_a_reader_blocked_on_a_full_queue_and_closes_the_upstream():
    upstream = Upstream(10_000)
    pump = Pump(upstream, capacity=4)
    before = set(threading.enumerate())
    pump.start()
    until(lambda: upstream.pulled == 5, "the reader blocking")
    (reader,) = set(threading.enumerate()) - before
    pump.cancel()
    reader.join(WAIT)
    assert not reader.is_alive()
    assert upstream.closes == 1


def test_everything_queued_comes_out_as_one_batch():
    upstream = Upstream(6, hold_after=5)
    pump = Pump(upstream)
    pump.start()
    upstream.held.wait(WAIT)  # the reader is past its fifth put
    assert [event.seq for event in pump.get(0)] == [1, 2, 3, 4, 5]
    upstream.release.set()
    assert [getattr(item, "seq", item) for item in drain(pump)] == [6, END]


def test_get_returns_none_when_nothing_comes():
    upstream = Upstream(1, hold_after=0)
    pump = Pump(upstream)
    pump.start()
    upstream.held.wait(WAIT)
    assert pump.get(0.01) is None
    pump.cancel()


def test_cancel_after_the_end_leaves_the_upstream_alone():
    # A spent Bedrock stream's connection is back in the pool, perhaps serving another stream.
    upstream = Upstream(3)
    pump = Pump(upstream)
    pump.start()
    assert drain(pump)[-1] is END
    pump.cancel()
    assert upstream.closes == 0


def test_cancel_before_start_closes_the_upstream_and_starts_no_reader():
    upstream = Upstream(3)
    pump = Pump(upstream)
    pump.cancel()
    pump.start()
    assert upstream.closes == 1 and upstream.pulled == 0
    assert pump.get(0) is None


def test_cancel_twice_closes_once():
    upstream = Upstream(10, hold_after=1)
    pump = Pump(upstream)
    pump.start()
    upstream.held.wait(WAIT)
    pump.cancel()
    pump.cancel()
    assert upstream.closes == 1


def test_a_reader_crash_becomes_a_failure_event_and_a_logged_traceback(caplog: pytest.LogCaptureFixture):
    upstream = Upstream(10, crash_after=2)
    pump = Pump(upstream)
    with caplog.at_level(logging.ERROR, logger="bedrock_relay.pump"):
        pump.start()
        items = drain(pump)
    assert [type(item).__name__ for item in items[:-1]] == ["Text", "Text", "Failure"]
    failure = items[2]
    assert failure.code == "internal_error" and "the upstream broke" in failure.message
    assert "RuntimeError: the upstream broke" in caplog.text
