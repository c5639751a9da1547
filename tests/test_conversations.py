"""Conversations in the store: turns kept across requests, one answer at a time, deleted on request."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from standin.server import StandInServer
from tests.conftest import caller_keys, store_env, wait_for_record
from tests.harness import AppProcess, start_app

NDJSON = {"Accept": "application/x-ndjson"}


@pytest.fixture(scope="module")
def store_app(standin: StandInServer, dynamodb) -> Iterator[AppProcess]:
    process = start_app(standin.url, **store_env(dynamodb), BEDROCK_MAX_ATTEMPTS="1")
    yield process
    process.stop()


def chat(app: AppProcess, body: dict, headers: dict | None = None) -> tuple[dict, str, dict]:
    """Send one /chat in NDJSON; return its start event, its answer text and its last event."""
    response = httpx.post(f"{app.url}/chat", json=body, headers={**NDJSON, **(headers or {})}, timeout=30)
    assert response.status_code == 200, response.text
    lines = [httpx.Response(200, content=line).json() for line in response.text.splitlines()]
    text = "".join(line["text"] for line in lines if line["type"] == "token")
    return lines[0], text, lines[-1]


def sent_to_bedrock(standin: StandInServer, label: str) -> list:
    return next(r for r in standin.records if r.scenario["id"] == label).messages


def test_three_requests_make_one_conversation(store_app, standin):
    start, first, _ = chat(store_app, {"prompt": "[standin tokens=5 id=conv-1] one"})
    conversation_id = start["conversationId"]
    _, second, _ = chat(
        store_app, {"conversationId": conversation_id, "prompt": "[standin tokens=6 id=conv-2] two"}
    )
    _, third, end = chat(
        store_app, {"conversationId": conversation_id, "prompt": "[standin tokens=7 id=conv-3] three"}
    )
    assert end["stopReason"] == "end_turn"
    # Bedrock got the earlier turns ahead of each new prompt.
    assert sent_to_bedrock(standin, "conv-3") == [
        ("user", "[standin tokens=5 id=conv-1] one"),
        ("assistant", first),
        ("user", "[standin tokens=6 id=conv-2] two"),
        ("assistant", second),
        ("user", "[standin tokens=7 id=conv-3] three"),
    ]
    stored = httpx.get(f"{store_app.url}/conversations/{conversation_id}", timeout=10).json()
    assert stored["conversationId"] == conversation_id
    assert [(turn["role"], turn["content"]) for turn in stored["turns"]] == [
        *sent_to_bedrock(standin, "conv-3"),
        ("assistant", third),
    ]
    assert stored["turns"][-1]["stopReason"] == "end_turn" and "cut" not in stored["turns"][-1]


def test_a_cut_answer_is_kept_and_marked(store_app):
    start, text, end = chat(store_app, {"prompt": "[standin tokens=50] long", "maxTokens": 4})
    assert end["stopReason"] == "max_tokens"
    turns = httpx.get(f"{store_app.url}/conversations/{start['conversationId']}", timeout=10).json()["turns"]
    assert turns[-1] == {"role": "assistant", "content": text, "stopReason": "max_tokens", "cut": True}


def test_one_answer_at_a_time_per_conversation(store_app, standin):
    start, _, _ = chat(store_app, {"prompt": "[standin tokens=2] hi"})
    conversation_id = start["conversationId"]
    body = {"conversationId": conversation_id, "prompt": "[standin tokens=400 tps=20 ttft=0 id=busy-conv] go"}
    holder = threading.Thread(target=lambda: httpx.post(f"{store_app.url}/chat", json=body, timeout=60))
    holder.start()
    wait_for_record(standin, "busy-conv", "streaming")
    second = httpx.post(
        f"{store_app.url}/chat", json={"conversationId": conversation_id, "prompt": "meanwhile"}, timeout=10
    )
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "conversation_busy"
    holder.join(60)


def test_messages_and_a_conversation_do_not_mix(store_app):
    response = httpx.post(
        f"{store_app.url}/chat",
        json={"conversationId": "x", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "'conversationId'" in message and "'messages'" in message


def test_a_deleted_conversation_is_gone(store_app):
    start, _, _ = chat(store_app, {"prompt": "[standin tokens=2] hi"})
    url = f"{store_app.url}/conversations/{start['conversationId']}"
    assert httpx.delete(url, timeout=10).status_code == 204
    for response in (
        httpx.get(url, timeout=10),
        httpx.delete(url, timeout=10),
        httpx.post(
            f"{store_app.url}/chat",
            json={"conversationId": start["conversationId"], "prompt": "again"},
            timeout=10,
        ),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_with_sign_in_each_caller_lists_and_touches_only_their_own(standin, dynamodb):
    hashes, headers = caller_keys("alice", "bob")
    app = start_app(standin.url, **store_env(dynamodb), AUTH_MODE="api_key", API_KEY_HASHES=hashes)
    try:
        alice, bob = ({**headers[name]} for name in ("alice", "bob"))
        start, _, _ = chat(app, {"prompt": "[standin tokens=2] alice's question"}, alice)
        conversation_id = start["conversationId"]
        listed = httpx.get(f"{app.url}/conversations", headers=alice, timeout=10).json()["conversations"]
        assert [(c["conversationId"], c["turns"]) for c in listed] == [(conversation_id, 2)]
        assert listed[0]["title"] == "[standin tokens=2] alice's question"
        assert httpx.get(f"{app.url}/conversations", headers=bob, timeout=10).json() == {"conversations": []}
        url = f"{app.url}/conversations/{conversation_id}"
        for response in (
            httpx.get(url, headers=bob, timeout=10),
            httpx.delete(url, headers=bob, timeout=10),
            httpx.post(
                f"{app.url}/chat", json={"conversationId": conversation_id, "prompt": "hi"}, headers=bob
            ),
        ):
            assert response.status_code == 404, response.text
        assert httpx.get(url, headers=alice, timeout=10).status_code == 200
    finally:
        app.stop()


def test_without_sign_in_there_is_no_list(store_app):
    response = httpx.get(f"{store_app.url}/conversations", timeout=10)
    assert response.status_code == 404
    assert "sign-in" in response.json()["error"]["message"]


def test_a_client_that_sends_its_own_messages_gets_no_conversation(store_app):
    start, _, _ = chat(store_app, {"messages": [{"role": "user", "content": "[standin tokens=2] hi"}]})
    assert "conversationId" not in start and "streamId" in start
