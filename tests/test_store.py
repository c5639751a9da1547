"""Durable streams: two app processes stand for two Lambda environments sharing one DynamoDB table."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from standin.server import StandInServer
from tests.conftest import caller_keys, store_env, wait_for_record
from tests.faults import FaultyProxy
from tests.harness import AppProcess, start_app

SSE = {"Accept": "text/event-stream"}


def sse_events(lines: Iterator[str]) -> Iterator[dict]:
    """Parse SSE lines into {event, id, data} dicts (comments skipped)."""
    event: dict = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(": ")
            event[name] = json.loads(value) if name == "data" else value


@pytest.fixture(scope="module")
def pair(standin: StandInServer, dynamodb) -> Iterator[tuple[AppProcess, AppProcess]]:
    """Two environments of one deployment: separate processes, one table."""
    env = {**store_env(dynamodb), "HEARTBEAT_SECONDS": "0.5", "BEDROCK_MAX_ATTEMPTS": "1"}
    first = start_app(standin.url, **env)
    second = start_app(standin.url, **env)
    yield first, second
    first.stop()
    second.stop()


def stream(app: AppProcess, prompt: str) -> tuple[str, list[dict]]:
    response = httpx.post(f"{app.url}/chat", json={"prompt": prompt}, headers=SSE, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers["x-stream-id"], list(sse_events(response.text.splitlines()))


def resume(app: AppProcess, stream_id: str, after: int | None = None, **headers: str) -> list[dict]:
    params = {} if after is None else {"after": str(after)}
    response = httpx.get(f"{app.url}/chat/{stream_id}", params=params, headers={**SSE, **headers}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["x-stream-id"] == stream_id
    return list(sse_events(response.text.splitlines()))


def body_events(events: list[dict]) -> list[dict]:
    """The events that carry the answer, without `start` (whose request id is each response's own)."""
    return [event for event in events if event["event"] != "start"]


def test_a_stream_has_an_id_and_another_environment_replays_it_whole(pair):
    first, second = pair
    stream_id, original = stream(first, "[standin tokens=30 tps=0 reasoning=3] tell me")
    assert original[0]["data"]["streamId"] == stream_id
    assert original[-1]["event"] == "end"
    replayed = resume(second, stream_id)
    assert replayed[0]["event"] == "start" and replayed[0]["data"]["streamId"] == stream_id
    assert body_events(replayed) == body_events(original)
    # After any delta, the rest, and nothing else.
    assert body_events(resume(second, stream_id, after=10)) == body_events(original)[10:]
    assert body_events(resume(second, stream_id, **{"Last-Event-ID": "31"})) == body_events(original)[31:]


class Reader:
    """Reads one SSE stream on a thread, noting when a given delta id has arrived."""

    def __init__(self, app: AppProcess, prompt: str, until_id: str = "1"):
        self.events: list[dict] = []
        self.reached = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(app, prompt, until_id))
        self.thread.start()
        assert self.reached.wait(10)

    def _read(self, app: AppProcess, prompt: str, until_id: str) -> None:
        with httpx.stream("POST", f"{app.url}/chat", json={"prompt": prompt}, headers=SSE, timeout=30) as r:
            for event in sse_events(r.iter_lines()):
                self.events.append(event)
                if event.get("id") == until_id:
                    self.reached.set()

    @property
    def stream_id(self) -> str:
        return self.events[0]["data"]["streamId"]


def test_a_resume_mid_stream_follows_it_live_to_the_same_end(pair, standin):
    first, second = pair
    original = Reader(first, "[standin tokens=40 tps=20 ttft=0 id=live-resume] go", until_id="10")
    # The resume begins while the original is still generating.
    assert [r.outcome for r in standin.records if r.scenario["id"] == "live-resume"] == ["streaming"]
    resumed = resume(second, original.stream_id, after=10)
    original.thread.join()
    assert body_events(resumed) == body_events(original.events)[10:]
    assert resumed[-1]["event"] == "end"
    ids = [int(event["id"]) for event in resumed if "id" in event]
    assert ids == list(range(11, 41))


def test_cancel_from_another_environment_stops_bedrock(pair, standin):
    first, second = pair
    reader = Reader(first, "[standin tokens=2000 tps=20 ttft=0 id=cancel-me] go")
    events, stream_id = reader.events, reader.stream_id
    answer = httpx.post(f"{second.url}/chat/{stream_id}/cancel", timeout=10)
    assert answer.status_code == 202
    assert answer.json() == {"streamId": stream_id, "state": "cancelling"}
    wait_for_record(standin, "cancel-me", "client_closed", timeout=5)
    reader.thread.join(10)
    assert events[-1] == {"event": "end", "data": events[-1]["data"]}
    assert events[-1]["data"]["stopReason"] == "cancelled"
    record = first.log_for(events[0]["data"]["requestId"])
    assert record["outcome"] == "cancelled"
    # Idempotent: once ended, the final state.
    again = httpx.post(f"{second.url}/chat/{stream_id}/cancel", timeout=10)
    assert again.status_code == 200
    assert again.json() == {
        "streamId": stream_id,
        "state": "ended",
        "stopReason": "cancelled",
        "outcome": "cancelled",
    }
    # And a resume ends the same way.
    assert resume(second, stream_id)[-1] == events[-1]


def test_a_client_that_leaves_does_not_stop_the_answer(pair, standin):
    first, second = pair
    prompt = "[standin tokens=30 tps=30 ttft=0 id=left] go"
    with httpx.stream("POST", f"{first.url}/chat", json={"prompt": prompt}, headers=SSE, timeout=30) as r:
        stream_id = r.headers["x-stream-id"]
        for event in sse_events(r.iter_lines()):
            if event.get("id") == "3":
                break  # the client goes away mid-answer
    # Bedrock was not stopped: the answer was finished, and stored.
    wait_for_record(standin, "left", "complete", timeout=10)
    replayed = resume(second, stream_id)
    assert [int(e["id"]) for e in replayed if "id" in e] == list(range(1, 31))
    assert replayed[-1]["event"] == "end" and replayed[-1]["data"]["stopReason"] == "end_turn"
    record = first.log_for(stream_id)
    assert record["outcome"] == "complete" and record["clientGone"] is True and record["deltas"] == 30


def test_unknown_streams_are_404(pair):
    first, _ = pair
    for response in (
        httpx.get(f"{first.url}/chat/00000000-0000-4000-8000-000000000000", timeout=10),
        httpx.post(f"{first.url}/chat/00000000-0000-4000-8000-000000000000/cancel", timeout=10),
        httpx.get(f"{first.url}/chat/not%20an%20id", timeout=10),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_a_bad_resume_point_is_named(pair):
    first, _ = pair
    stream_id, _ = stream(first, "[standin tokens=3] hi")
    response = httpx.get(f"{first.url}/chat/{stream_id}", params={"after": "-1"}, timeout=10)
    assert response.status_code == 400
    assert "'after'" in response.json()["error"]["message"]


def test_only_the_caller_that_started_a_stream_may_touch_it(standin, dynamodb):
    hashes, headers = caller_keys("alice", "bob")
    app = start_app(standin.url, **store_env(dynamodb), AUTH_MODE="api_key", API_KEY_HASHES=hashes)
    try:
        alice, bob = ({**headers[name], **SSE} for name in ("alice", "bob"))
        prompt = {"prompt": "[standin tokens=5] hi"}
        started = httpx.post(f"{app.url}/chat", json=prompt, headers=alice, timeout=30)
        stream_id = started.headers["x-stream-id"]
        # Someone else's stream is as unknown as a made-up id: 404, never 403.
        for response in (
            httpx.get(f"{app.url}/chat/{stream_id}", headers=bob, timeout=10),
            httpx.post(f"{app.url}/chat/{stream_id}/cancel", headers=bob, timeout=10),
        ):
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert httpx.get(f"{app.url}/chat/{stream_id}", timeout=10).status_code == 401
        mine = httpx.get(f"{app.url}/chat/{stream_id}", headers=alice, timeout=10)
        assert mine.status_code == 200
        assert body_events(list(sse_events(mine.text.splitlines()))) == body_events(
            list(sse_events(started.text.splitlines()))
        )
    finally:
        app.stop()


def test_a_failing_store_never_cuts_the_stream_and_readers_learn_it_is_not_whole(standin, dynamodb):
    proxy = FaultyProxy(int(dynamodb.url.rsplit(":", 1)[1]))
    app = start_app(standin.url, **{**store_env(dynamodb), "AWS_ENDPOINT_URL_DYNAMODB": proxy.url})
    try:
        reader = Reader(app, "[standin tokens=60 tps=30 ttft=0 id=store-down] go", until_id="10")
        proxy.break_()
        reader.thread.join(30)
        # The live stream went on to its end, every delta in order.
        assert [int(e["id"]) for e in reader.events if "id" in e] == list(range(1, 61))
        assert reader.events[-1]["event"] == "end" and reader.events[-1]["data"]["stopReason"] == "end_turn"
        assert app.log_for(reader.stream_id)["outcome"] == "complete"
        proxy.heal()
        # Until the stream is marked (once the store is back), a resume would wait for its end:
        # only the status is looked at, and the connection closed.
        end = time.monotonic() + 30
        while True:
            with httpx.stream("GET", f"{app.url}/chat/{reader.stream_id}", timeout=10) as response:
                if response.status_code == 410:
                    assert json.loads(response.read())["error"]["code"] == "not_resumable"
                    break
            assert time.monotonic() < end, "the stream was never marked not resumable"
            time.sleep(0.5)
    finally:
        app.stop()
        proxy.close()


def test_a_store_taken_to_be_down_is_probed_by_one_call_at_a_time(dynamodb):
    from bedrock_relay.store import PROBE_SECONDS, Store, StoreDown, StoreError

    proxy = FaultyProxy(int(dynamodb.url.rsplit(":", 1)[1]))
    now = [1000.0]  # the store's monotonic clock, moved by hand

    def tick() -> float:
        now[0] += 0.001  # each reading a moment later: calls begin in order
        return now[0]

    try:
        store = Store(dynamodb.client(via=proxy.url), dynamodb.table, 60, monotonic=tick)
        key = {"pk": {"S": "s#probed"}, "sk": {"S": "m"}}
        proxy.break_()
        with pytest.raises(StoreError):
            store.call("get_item", Key=key)
        assert store.down
        with pytest.raises(StoreDown):
            store.check_up()  # not yet: the probe waits PROBE_SECONDS
        now[0] += PROBE_SECONDS
        tried = proxy.connections
        store.check_up()  # the probe: let through, and it tries
        with pytest.raises(StoreError) as probe:
            store.call("get_item", Key=key)
        assert not isinstance(probe.value, StoreDown) and proxy.connections > tried
        with pytest.raises(StoreDown):
            store.check_up()  # the next waits for the next probe
        proxy.heal()
        now[0] += PROBE_SECONDS
        store.check_up()
        store.call("get_item", Key=key)
        assert not store.down
    finally:
        proxy.close()


def test_a_call_judges_the_store_only_against_calls_that_began_after_it(dynamodb):
    """An answer to a call begun before a failure does not end it; a failure of a call begun before
    an answer does not start one."""
    from bedrock_relay.store import Store, StoreError

    proxy = FaultyProxy(int(dynamodb.url.rsplit(":", 1)[1]))
    now = [1000.0]
    try:
        store = Store(dynamodb.client(via=proxy.url), dynamodb.table, 60, monotonic=lambda: now[0])
        key = {"pk": {"S": "s#judged"}, "sk": {"S": "m"}}
        store.call("get_item", Key=key)  # answered, begun at 1000
        proxy.break_()
        now[0] = 999.0  # a call begun before that answer, failing only now
        with pytest.raises(StoreError):
            store.call("get_item", Key=key)
        assert not store.down
        now[0] = 1002.0
        with pytest.raises(StoreError):
            store.call("get_item", Key=key)
        assert store.down
        proxy.heal()
        now[0] = 1001.0  # begun before the failure: says nothing of the store since
        store.call("get_item", Key=key)
        assert store.down
        now[0] = 1003.0
        store.call("get_item", Key=key)
        assert not store.down
    finally:
        proxy.close()


def test_only_a_store_that_fails_outright_is_taken_to_be_down(dynamodb):
    """A 5xx is the store failing; a refusal (a bad request, a throttle) is an answer."""
    from bedrock_relay.store import Store, StoreError
    from botocore.stub import Stubber

    client = dynamodb.client()
    store = Store(client, dynamodb.table, 60)
    with Stubber(client) as stubbed:
        for code, status, down in (
            ("InternalServerError", 500, True),
            ("ValidationException", 400, False),
            ("ServiceUnavailable", 503, True),
            ("ProvisionedThroughputExceededException", 400, False),
        ):
            stubbed.add_client_error("get_item", service_error_code=code, http_status_code=status)
            with pytest.raises(StoreError):
                store.call("get_item", Key={"pk": {"S": "s#x"}, "sk": {"S": "m"}})
            assert store.down is down, code
