"""The Bedrock boundary: client settings that keep long streams alive, and retries of the first call only."""

from __future__ import annotations

import threading
import time
import uuid

from bedrock_relay.bedrock import BedrockStream, make_client, open_stream
from bedrock_relay.settings import Settings

from tests.conftest import wait_for_record
from tests.harness import OFFLINE_AWS_ENV


def test_client_defaults_outlast_botocores_60s_read_timeout(monkeypatch):
    for name, value in OFFLINE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    config = make_client(Settings()).meta.config
    assert config.read_timeout == 900
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_one_attempt_means_one_call_to_bedrock(client, standin):
    label = uuid.uuid4().hex[:12]
    response = client.post(
        "/chat", json={"prompt": f"[standin error=ServiceUnavailableException id={label}]"}
    )
    assert response.status_code == 503
    assert len([r for r in standin.records if r.scenario["id"] == label]) == 1


def read_in_background(stream) -> tuple[list, threading.Thread]:
    events: list = []

    def read() -> None:
        for event in stream:
            events.append(event)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return events, reader


def test_close_wakes_a_reader_blocked_on_a_silent_stream(standin, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", standin.url)
    for name, value in OFFLINE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    label = uuid.uuid4().hex[:12]
    prompt = f"[standin id={label} tokens=5 after=1 silence=60]"
    stream = open_stream(make_client(Settings()), {"modelId": "m", "messages": message(prompt)}, 2)
    events, reader = read_in_background(stream)
    until(lambda: events, "the first token")
    stream.close()
    reader.join(5)
    assert not reader.is_alive(), "the reader stayed blocked in the silence after close()"
    assert wait_for_record(standin, label, "client_closed").tokens_sent == 1


def test_closing_a_finished_stream_leaves_its_pooled_connection_to_the_next_stream(standin, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", standin.url)
    for name, value in OFFLINE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    client = make_client(Settings(bedrock_max_attempts=1))
    first = open_stream(client, {"modelId": "m", "messages": message("[standin tokens=3]")}, 2)
    assert type(list(first)[-1]).__name__ == "Usage"
    # The second stream reuses the pooled connection: closing the first must not cut it.
    label = uuid.uuid4().hex[:12]
    prompt = f"[standin id={label} tokens=6 tps=20]"
    second = open_stream(client, {"modelId": "m", "messages": message(prompt)}, 2)
    events, reader = read_in_background(second)
    until(lambda: events, "the second stream's first token")
    first.close()
    reader.join(5)
    assert type(events[-1]).__name__ == "Usage"
    assert wait_for_record(standin, label, "complete")


class FakeHttpResponse:
    """urllib3's response as BedrockStream uses it: returned to the pool, or shut down."""

    def __init__(self) -> None:
        self.shutdowns = 0

    def release_conn(self) -> None:
        pass

    def shutdown(self) -> None:
        self.shutdowns += 1


class FakeEventStream:
    closes = 0

    def close(self) -> None:
        self.closes += 1


def test_close_after_the_connection_went_back_to_the_pool_does_nothing():
    http, events = FakeHttpResponse(), FakeEventStream()
    stream = BedrockStream(events, http)
    http.release_conn()  # what urllib3 does inside the read that ends the stream
    stream.close()
    assert (http.shutdowns, events.closes) == (0, 0)


def test_close_before_the_end_shuts_the_connection_down():
    http, events = FakeHttpResponse(), FakeEventStream()
    BedrockStream(events, http).close()
    assert (http.shutdowns, events.closes) == (1, 1)


def message(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"text": text}]}]


def until(condition, what: str) -> None:
    end = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.005)
