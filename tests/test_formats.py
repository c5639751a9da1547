"""Each output format, read by an independent parser, carries the same answer."""

from __future__ import annotations

import json

from bedrock_relay import formats
from bedrock_relay.app import create_app
from flask import jsonify
from httpx_sse import connect_sse

SSE = {"Accept": "text/event-stream"}
NDJSON = {"Accept": "application/x-ndjson"}


def test_healthz_is_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    # Answered by the server's event loop, with how busy its threads are.
    assert response.json() == {"status": "ok", "threads": 64, "threadsBusy": 0, "requestsWaiting": 0}


def test_text_is_the_default_and_streams_raw_answer(client):
    response = client.post("/chat", content='{"prompt": "hi [standin tokens=5]"}')
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-request-id"]
    assert "content-length" not in response.headers
    assert len(response.text.split()) == 5
    assert "[error]" not in response.text


def test_any_content_type_is_read_as_json(client):
    for content_type in ("application/x-www-form-urlencoded", "text/plain", "application/json"):
        response = client.post(
            "/chat", content='{"prompt": "hi [standin tokens=2]"}', headers={"Content-Type": content_type}
        )
        assert response.status_code == 200, content_type


def test_sse_events_in_order(client):
    with connect_sse(client, "POST", "/chat", json={"prompt": "hi [standin tokens=4]"}) as source:
        assert source.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        events = list(source.iter_sse())
    names = [event.event for event in events]
    assert names == ["start", "token", "token", "token", "token", "end"]
    start = json.loads(events[0].data)
    assert start["requestId"] == source.response.headers["x-request-id"]
    assert start["modelId"]
    assert [event.id for event in events[1:5]] == ["1", "2", "3", "4"]
    end = json.loads(events[-1].data)
    assert end["stopReason"] == "end_turn"
    assert end["usage"]["outputTokens"] == 4
    assert end["usage"]["totalTokens"] == end["usage"]["inputTokens"] + 4
    assert end["metrics"]["ttftMs"] <= end["metrics"]["durationMs"]


def test_reasoning_is_its_own_event_and_never_in_the_text(client):
    with connect_sse(client, "POST", "/chat", json={"prompt": "q [standin tokens=3 reasoning=4]"}) as source:
        events = list(source.iter_sse())
    reasoning = [json.loads(e.data)["text"] for e in events if e.event == "reasoning"]
    tokens = [json.loads(e.data)["text"] for e in events if e.event == "token"]
    assert len(reasoning) == 4 and len(tokens) == 3
    text = client.post("/chat", json={"prompt": "q [standin tokens=3 reasoning=4]"}).text
    assert text == "".join(tokens)
    assert "".join(reasoning).strip() not in text


def test_ndjson_lines_carry_the_same_events(client):
    response = client.post("/chat", json={"prompt": "hi [standin tokens=3]"}, headers=NDJSON)
    assert response.headers["content-type"] == "application/x-ndjson; charset=utf-8"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["type"] for line in lines] == ["start", "token", "token", "token", "end"]
    assert lines[-1]["usage"]["outputTokens"] == 3


def test_json_returns_the_whole_answer_at_once(client):
    streamed = client.post("/chat", json={"prompt": "same [standin tokens=6]"}).text
    response = client.post(
        "/chat", json={"prompt": "same [standin tokens=6]"}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["text"] == streamed
    assert body["stopReason"] == "end_turn"
    assert body["usage"]["outputTokens"] == 6


def test_a_json_document_is_byte_for_byte_what_jsonify_writes():
    data = {"text": "naïve 中文 😀", "usage": None, "b": [1, 2.5], "a": {"z": True}}
    with create_app({"BEDROCK_CLIENT": object()}).app_context():
        assert formats.document(data) == jsonify(data).get_data()


def test_max_tokens_reaches_bedrock_and_the_stop_reason(client):
    response = client.post(
        "/chat",
        json={"prompt": "hi [standin tokens=50]", "maxTokens": 7},
        headers={"Accept": "application/json"},
    )
    assert response.json()["stopReason"] == "max_tokens"
    assert response.json()["usage"]["outputTokens"] == 7


def test_multi_turn_messages_are_accepted(client):
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "again [standin tokens=2]"},
    ]
    response = client.post("/chat", json={"messages": messages, "system": "be brief", "temperature": 0.5})
    assert response.status_code == 200
    assert len(response.text.split()) == 2


def test_multibyte_text_arrives_intact_in_every_format(client):
    prompt = {"prompt": "u [standin tokens=40 text=unicode]"}
    text = client.post("/chat", json=prompt).text
    assert "日本語の" in text and "👩\u200d💻" in text and "e\u0301clair" in text
    ndjson = client.post("/chat", json=prompt, headers=NDJSON).text
    tokens = [json.loads(line) for line in ndjson.splitlines()]
    assert "".join(t["text"] for t in tokens if t["type"] == "token") == text
    with connect_sse(client, "POST", "/chat", json=prompt) as source:
        sse_text = "".join(json.loads(e.data)["text"] for e in source.iter_sse() if e.event == "token")
    assert sse_text == text
