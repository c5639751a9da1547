"""The relay core in-process: a scripted source on a fake clock, so every timer is exact and instant."""

from __future__ import annotations

import json

import pytest
from bedrock_relay.events import Ended, Failure, Interrupt, Reasoning, Stop, Summary, Text, Usage
from bedrock_relay.formats import JsonWriter, SseWriter, TextWriter
from bedrock_relay.pump import END, Pump
from bedrock_relay.relay import PEER_CHECK_SECONDS, Listener, Relay


class Clock:
    """Virtual monotonic time, moved only by the source's waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Pause:
    """A silence of the upstream, in virtual seconds."""

    def __init__(self, seconds: float):
        self.left = seconds


class ScriptedSource:
    """Hands the relay batches and silences from a script; a wait moves the clock instead of sleeping."""

    def __init__(self, clock: Clock, *script):
        self.clock = clock
        self.script = list(script)
        self.started = False
        self.cancels = 0
        self.waits: list[float] = []

    def start(self) -> None:
        self.started = True

    def get(self, timeout: float) -> list | None:
        self.waits.append(timeout)
        item = self.script[0] if self.script else Pause(float("inf"))
        if isinstance(item, Pause):
            step = min(item.left, timeout)
            item.left -= step
            self.clock.now += step
            if item.left <= 0:
                self.script.pop(0)
            return None
        self.script.pop(0)
        return item

    def cancel(self) -> None:
        self.cancels += 1


class Recorder(Listener):
    def __init__(self) -> None:
        self.events: list = []
        self.closed: list[Summary] = []

    def on_events(self, events: list) -> None:
        self.events.extend(events)

    def on_close(self, summary: Summary) -> None:
        self.closed.append(summary)


class Peer:
    """A client that leaves at a given virtual time."""

    def __init__(self, clock: Clock, leaves_at: float):
        self.clock, self.leaves_at = clock, leaves_at
        self.timeouts: list[float] = []
        self.restored = 0

    def gone(self) -> bool:
        return self.clock.now >= self.leaves_at

    def bound_writes(self, seconds: float) -> None:
        self.timeouts.append(seconds)

    def restore(self) -> None:
        self.restored += 1


def tokens(*texts: str, start: int = 1) -> list[Text]:
    return [Text(start + i, text) for i, text in enumerate(texts)]


DONE = [Stop("end_turn"), Usage(3, 2, 5), END]


def relay(source, writer=None, *, deadline=900.0, beat=15.0, peer=None, listeners=(), detach=False):
    return Relay(
        source,
        writer or SseWriter("req-1", "model-1"),
        started=0.0,
        deadline=deadline,
        heartbeat_seconds=beat,
        peer=peer,
        listeners=listeners,
        detach=detach,
        clock=source.clock,
    )


def sse_events(chunks: list[bytes]) -> list[str]:
    """Return each SSE event's name (or `ping`), in order."""
    names = []
    for block in b"".join(chunks).decode().split("\n\n"):
        if block == ": ping":
            names.append("ping")
        elif block:
            names.append(next(line[7:] for line in block.splitlines() if line.startswith("event: ")))
    return names


def last_data(chunks: list[bytes]) -> dict:
    return json.loads(b"".join(chunks).decode().strip().split("\n\n")[-1].split("data: ", 1)[1])


def test_a_complete_stream_ends_with_its_summary_and_closes_once():
    clock = Clock()
    source = ScriptedSource(clock, Pause(2), tokens("a", " b"), Pause(1), DONE)
    recorder = Recorder()
    stream = relay(source, listeners=[recorder])
    chunks = list(stream.body())
    assert sse_events(chunks) == ["start", "token", "token", "end"]
    end = last_data(chunks)
    assert end["stopReason"] == "end_turn" and end["usage"]["totalTokens"] == 5
    assert end["metrics"] == {"ttftMs": 2000, "durationMs": 3000}
    assert stream.summary.outcome == "complete" and stream.summary.deltas == 2
    # Listeners see every event, but the outcome only once the response is over.
    assert recorder.events == [*tokens("a", " b"), *DONE[:-1]] and recorder.closed == []
    stream.close()
    stream.close()
    assert recorder.closed == [stream.summary]


def test_what_arrived_together_is_written_in_one_chunk():
    clock = Clock()
    source = ScriptedSource(clock, [*tokens("a", "b", "c"), *DONE])
    chunks = list(relay(source).body())
    assert len(chunks) == 2  # the start event, then everything the batch held
    assert sse_events(chunks[1:]) == ["token", "token", "token", "end"]


def test_heartbeats_fill_a_silence_at_the_interval():
    clock = Clock()
    source = ScriptedSource(clock, tokens("a"), Pause(40), tokens("b", start=2), DONE)
    chunks = list(relay(source, beat=15).body())
    # Silent from 0 to 40 s: pings at 15 and 30, none after the silence ends.
    assert sse_events(chunks) == ["start", "token", "ping", "ping", "token", "end"]


def test_no_heartbeat_while_tokens_keep_coming():
    clock = Clock()
    script = [item for i in range(6) for item in (Pause(10), tokens(str(i), start=i + 1))]
    chunks = list(relay(ScriptedSource(clock, *script, DONE), beat=15).body())
    assert "ping" not in sse_events(chunks)


def test_formats_without_a_heartbeat_send_none():
    clock = Clock()
    source = ScriptedSource(clock, Pause(100), tokens("a"), DONE)
    assert b"".join(relay(source, TextWriter("r", "m"), beat=1).body()) == b"a"


def test_the_deadline_ends_a_silent_stream_and_cancels_the_upstream():
    clock = Clock()
    source = ScriptedSource(clock, tokens("a"), Pause(100))
    stream = relay(source, deadline=5.0)
    chunks = list(stream.body())
    assert sse_events(chunks)[-1] == "end"
    assert last_data(chunks)["stopReason"] == "deadline"
    assert stream.summary.outcome == "deadline" and stream.summary.duration_ms == 5000
    assert source.cancels >= 1
    # No wait ever reached past the deadline.
    assert clock.now == 5.0


def test_the_deadline_in_plain_text_is_an_error_line():
    clock = Clock()
    source = ScriptedSource(clock, tokens("a"), Pause(100))
    body = b"".join(relay(source, TextWriter("r", "m"), deadline=5.0).body()).decode()
    assert body.splitlines() == ["a", "[error] deadline: the stream reached its time limit and was stopped"]


def test_an_upstream_failure_ends_with_an_error_event():
    clock = Clock()
    source = ScriptedSource(clock, tokens("a"), [Failure("throttlingException", "slow", True), END])
    stream = relay(source)
    chunks = list(stream.body())
    assert sse_events(chunks) == ["start", "token", "error"]
    assert last_data(chunks) == {"code": "throttlingException", "message": "slow", "retryable": True}
    assert stream.summary.outcome == "error"


def test_a_client_that_leaves_is_noticed_on_the_timer_without_a_write():
    clock = Clock()
    peer = Peer(clock, leaves_at=3.5)
    source = ScriptedSource(clock, tokens("a"), Pause(600))
    stream = relay(source, TextWriter("r", "m"), peer=peer)
    chunks = list(stream.body())
    assert chunks == [b"a"]
    assert stream.summary.outcome == "client_disconnected"
    # Seen at the first check after it left, and the upstream was stopped.
    assert clock.now == pytest.approx(3.5 + PEER_CHECK_SECONDS, abs=PEER_CHECK_SECONDS)
    assert source.cancels >= 1
    stream.close()
    assert peer.restored == 1


def test_writes_are_bounded_by_the_deadline_and_the_socket_restored_only_at_close():
    clock = Clock()
    peer = Peer(clock, leaves_at=float("inf"))
    stream = relay(ScriptedSource(clock, tokens("a"), Pause(3), DONE), peer=peer, deadline=30.0)
    list(stream.body())
    # Renewed at every check, so a write late in the stream cannot run far past the deadline.
    assert peer.timeouts == [31.0, 30.0, 29.0, 28.0] and peer.restored == 0
    stream.close()
    assert peer.restored == 1


def test_a_server_that_stops_taking_the_body_is_a_disconnect():
    clock = Clock()
    source = ScriptedSource(clock, tokens("a"), tokens("b", start=2), DONE)
    stream = relay(source)
    body = stream.body()
    next(body)
    next(body)
    body.close()  # what the server does when a write to the client fails
    assert stream.summary.outcome == "client_disconnected"
    assert source.cancels >= 1


def test_a_body_never_taken_still_closes_the_upstream_and_logs_once():
    clock = Clock()
    source = ScriptedSource(clock, DONE)
    recorder = Recorder()
    stream = relay(source, listeners=[recorder])
    stream.close()
    assert not source.started and source.cancels == 1
    assert [summary.outcome for summary in recorder.closed] == ["client_disconnected"]


def test_a_writer_that_fails_is_an_internal_error_not_a_disconnect():
    class BrokenWriter(SseWriter):
        def delta(self, event):
            raise ValueError(f"bug at {event.seq}")

    clock = Clock()
    stream = relay(ScriptedSource(clock, tokens("a"), DONE), BrokenWriter("r", "m"))
    with pytest.raises(ValueError):
        list(stream.body())
    assert stream.summary.outcome == "internal_error"
    assert stream.summary.failure.code == "internal_error"


def test_a_failing_listener_does_not_stop_the_others():
    class Broken(Listener):
        def on_close(self, summary: Summary) -> None:
            raise RuntimeError(f"store down, {summary.outcome} not saved")

    clock = Clock()
    recorder = Recorder()
    stream = relay(ScriptedSource(clock, DONE), listeners=[Broken(), recorder])
    list(stream.body())
    stream.close()
    assert len(recorder.closed) == 1


def test_a_listener_that_fails_on_the_events_is_dropped_and_the_stream_goes_on(caplog):
    class Broken(Listener):
        def on_events(self, events: list) -> None:
            raise KeyError(len(events))

    clock = Clock()
    broken, recorder = Broken(), Recorder()
    source = ScriptedSource(clock, tokens("a"), tokens("b", start=2), DONE)
    stream = relay(source, listeners=[broken, recorder])
    chunks = list(stream.body())
    assert sse_events(chunks) == ["start", "token", "token", "end"]
    assert stream.summary.outcome == "complete" and len(recorder.events) == 4
    assert caplog.text.count("a stream listener failed") == 1


def test_the_status_is_the_one_the_first_bytes_went_out_with():
    clock = Clock()
    failing = [Failure("truncated", "cut", True), END]
    streamed = relay(ScriptedSource(clock, tokens("a"), failing))
    list(streamed.body())
    answered = relay(ScriptedSource(clock, tokens("a"), failing), JsonWriter("r", "m"))
    answered.run()
    gone = relay(ScriptedSource(clock, Pause(5), DONE), JsonWriter("r", "m"), peer=Peer(clock, leaves_at=2))
    gone.run()
    assert (streamed.summary.status, answered.summary.status, gone.summary.status) == (200, 502, None)


def test_time_to_first_token_ignores_reasoning():
    clock = Clock()
    source = ScriptedSource(clock, Pause(1), [Reasoning(1, "hmm")], Pause(2), [Text(2, "a")], DONE)
    stream = relay(source)
    list(stream.body())
    assert stream.summary.ttft_ms == 3000 and stream.summary.deltas == 2


def test_the_json_answer_is_written_once_at_the_end():
    clock = Clock()
    source = ScriptedSource(clock, [Reasoning(1, "think")], tokens("a", "b", start=2), DONE)
    stream = relay(source, JsonWriter("r", "m"))
    body = json.loads(stream.run())
    assert body["text"] == "ab" and body["reasoning"] == "think" and body["stopReason"] == "end_turn"


def test_a_failed_json_answer_is_the_error_shape():
    clock = Clock()
    source = ScriptedSource(clock, tokens("a"), [Failure("truncated", "cut", True), END])
    body = json.loads(relay(source, JsonWriter("r", "m")).run())
    assert body == {"error": {"code": "truncated", "message": "cut"}}


def test_with_the_real_pump_a_reader_crash_ends_the_stream_with_an_error_event():
    class Crashing:
        closes = 0

        def __iter__(self):
            yield Text(1, "a")
            raise RuntimeError("decoder bug")

        def close(self) -> None:
            self.closes += 1

    upstream = Crashing()
    stream = Relay(Pump(upstream), SseWriter("r", "m"), started=0.0, deadline=1e12, heartbeat_seconds=15)
    chunks = list(stream.body())
    stream.close()
    assert sse_events(chunks) == ["start", "token", "error"]
    assert last_data(chunks)["code"] == "internal_error"
    assert stream.summary.outcome == "error"
    # The reader ended by itself: nothing is left to close.
    assert upstream.closes == 0


def test_an_interrupt_ends_the_stream_as_cancelled_and_drops_what_came_after():
    clock = Clock()
    source = ScriptedSource(clock, tokens("a"), [Text(2, "b"), Interrupt("cancelled"), Text(3, "c"), END])
    recorder = Recorder()
    stream = relay(source, listeners=[recorder])
    chunks = list(stream.body())
    stream.close()
    assert sse_events(chunks) == ["start", "token", "token", "end"]
    assert last_data(chunks)["stopReason"] == "cancelled"
    assert [event.seq for event in recorder.events] == [1, 2]
    assert recorder.closed[0].outcome == "cancelled" and source.cancels >= 1


def test_a_replayed_end_is_the_original_end():
    clock = Clock()
    original = Ended("max_tokens", Usage(9, 8, 17), 120, 4567, None)
    source = ScriptedSource(clock, Pause(3), [*tokens("a", "b"), original, END])
    chunks = list(relay(source).body())
    assert last_data(chunks) == {
        "stopReason": "max_tokens",
        "usage": {"inputTokens": 9, "outputTokens": 8, "totalTokens": 17},
        "metrics": {"ttftMs": 120, "durationMs": 4567},
    }


class EndFirst(Listener):
    """Notes when it saw the end, against what the client had been sent by then."""

    def __init__(self, sent: list) -> None:
        self.sent = sent
        self.seen_with: list | None = None

    def on_end(self, summary: Summary) -> None:
        self.seen_with = list(self.sent) if summary.outcome else None


def test_a_listener_sees_the_end_before_the_client_is_sent_it():
    clock = Clock()
    sent: list = []
    listener = EndFirst(sent)
    source = ScriptedSource(clock, tokens("a"), DONE)
    for chunk in relay(source, listeners=[listener]).body():
        sent.append(chunk)
    assert listener.seen_with is not None and len(listener.seen_with) == len(sent) - 1


@pytest.mark.parametrize("detach", [False, True])
def test_a_client_that_leaves_stops_the_answer_unless_a_store_keeps_it(detach):
    clock = Clock()
    source = ScriptedSource(clock, tokens("a"), Pause(2), tokens("b", start=2), Pause(2), DONE)
    recorder = Recorder()
    stream = relay(source, peer=Peer(clock, leaves_at=1.0), listeners=[recorder], detach=detach)
    list(stream.body())
    stream.close()
    summary = recorder.closed[0]
    assert summary.client_gone
    if detach:
        # Finished unseen: every event reached the store's listener, and the answer ended normally.
        assert [event.seq for event in recorder.events if isinstance(event, Text)] == [1, 2]
        assert summary.outcome == "complete" and summary.stop_reason == "end_turn"
    else:
        assert summary.outcome == "client_disconnected" and source.cancels >= 1


class EndCounter(Listener):
    def __init__(self) -> None:
        self.ends: list[str] = []

    def on_end(self, summary: Summary) -> None:
        self.ends.append(summary.outcome)


def test_a_write_of_the_end_that_fails_leaves_the_finished_stream_as_it_ended():
    clock = Clock()
    source = ScriptedSource(clock, tokens("a"), DONE)
    counter = EndCounter()
    stream = relay(source, listeners=[counter], detach=True)
    body = stream.body()
    chunks = [next(body), next(body), next(body)]
    assert b"event: end" in chunks[-1]
    body.close()  # the server could not write the end: it closes the body
    stream.close()
    # Not finished a second time (as a deadline, after waiting for events that will never come).
    assert counter.ends == ["complete"]
    assert stream.summary.outcome == "complete" and stream.summary.client_gone
    assert clock.now < 900.0


def test_an_interrupt_behind_the_upstreams_own_end_changes_nothing():
    clock = Clock()
    source = ScriptedSource(
        clock, [Text(1, "a"), Stop("end_turn"), Usage(3, 1, 4), END, Interrupt("cancelled"), END]
    )
    chunks = list(relay(source).body())
    assert sse_events(chunks) == ["start", "token", "end"]
    assert last_data(chunks)["stopReason"] == "end_turn"
