"""The answer cache: a deterministic request answered once by Bedrock, then replayed from the store."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest
from bedrock_relay.settings import SettingsError, from_env

from standin.server import StandInServer
from tests.conftest import caller_keys, store_env, wait_for_record
from tests.harness import AppProcess, start_app
from tests.test_openai_api import MODEL

NDJSON = {"Accept": "application/x-ndjson"}


@pytest.fixture(scope="module")
def cache_app(standin: StandInServer, dynamodb) -> Iterator[AppProcess]:
    process = start_app(
        standin.url, **store_env(dynamodb), ANSWER_CACHE_SECONDS="600", BEDROCK_MAX_ATTEMPTS="1"
    )
    yield process
    process.stop()


def label() -> str:
    return f"ac-{uuid.uuid4().hex[:10]}"


def calls(standin: StandInServer, tag: str) -> int:
    """How many times Bedrock was asked this prompt."""
    return sum(1 for record in standin.records if record.scenario["id"] == tag)


def ask(app: AppProcess, body: dict, headers: dict | None = None) -> tuple[httpx.Response, list[dict]]:
    response = httpx.post(f"{app.url}/chat", json=body, headers={**NDJSON, **(headers or {})}, timeout=30)
    assert response.status_code == 200, response.text
    return response, [json.loads(line) for line in response.text.splitlines()]


def text_of(lines: list[dict]) -> str:
    return "".join(line["text"] for line in lines if line["type"] == "token")


def test_a_repeated_deterministic_request_is_replayed_without_calling_bedrock(cache_app, standin):
    tag = label()
    body = {"prompt": f"[standin tokens=40 tps=50 id={tag}] the capital of France?", "temperature": 0}
    first, fresh = ask(cache_app, body)
    assert first.headers["x-answer-cache"] == "miss" and "cached" not in fresh[0]
    wait_for_record(standin, tag, "complete")
    second, replayed = ask(cache_app, body)
    assert second.headers["x-answer-cache"] == "hit"
    assert calls(standin, tag) == 1  # the stand-in saw one request only
    assert replayed[0]["cached"] is True and replayed[-1]["cached"] is True
    assert text_of(replayed) == text_of(fresh) and len(text_of(fresh).split()) == 40
    assert replayed[-1]["stopReason"] == "end_turn"
    assert replayed[-1]["usage"] == {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
    log = cache_app.log_for(second.headers["x-request-id"])
    assert log["answerCache"] == "hit" and log["outputTokens"] == 0
    # Every format replays it: the JSON answer says so too.
    answer = httpx.post(
        f"{cache_app.url}/chat", json=body, headers={"Accept": "application/json"}, timeout=30
    )
    assert answer.json()["cached"] is True and answer.json()["text"] == text_of(fresh)
    assert httpx.post(f"{cache_app.url}/chat", json=body, timeout=30).text == text_of(fresh)
    assert calls(standin, tag) == 1


def test_only_temperature_zero_without_tools_is_cached(cache_app, standin):
    tag = label()
    body = {"prompt": f"[standin tokens=3 id={tag}] hi", "temperature": 0.5}
    for _ in range(2):
        response, _ = ask(cache_app, body)
        assert response.headers["x-answer-cache"] == "ineligible"
        wait_for_record(standin, tag, "complete")
    assert calls(standin, tag) == 2


def test_a_request_can_bypass_the_cache_and_its_fresh_answer_is_kept(cache_app, standin):
    tag = label()
    body = {"prompt": f"[standin tokens=3 id={tag}] hi", "temperature": 0}
    ask(cache_app, body)
    wait_for_record(standin, tag, "complete")
    bypassed, _ = ask(cache_app, {**body, "cache": {"answer": False}})
    assert bypassed.headers["x-answer-cache"] == "bypass"
    no_cache, _ = ask(cache_app, body, {"Cache-Control": "no-cache"})
    assert no_cache.headers["x-answer-cache"] == "bypass"
    assert calls(standin, tag) == 3
    again, _ = ask(cache_app, body)
    assert again.headers["x-answer-cache"] == "hit" and calls(standin, tag) == 3


@pytest.mark.parametrize(
    ("scenario", "extra"),
    [
        ("tokens=20", {"maxTokens": 5}),  # cut by maxTokens
        ("tokens=20 stream_error=modelStreamErrorException after=3", {}),  # failed mid-stream
        ("tokens=20 guardrail=output after=3", {}),  # blocked
    ],
)
def test_cut_failed_and_blocked_answers_are_never_cached(cache_app, standin, scenario, extra):
    tag = label()
    body = {"prompt": f"[standin {scenario} id={tag}] hi", "temperature": 0, **extra}
    for attempt in (1, 2):
        response = httpx.post(f"{cache_app.url}/chat", json=body, headers=NDJSON, timeout=30)
        assert response.headers["x-answer-cache"] == "miss"
        assert calls(standin, tag) == attempt


def test_a_cancelled_answer_is_never_cached(cache_app, standin):
    tag = label()
    body = {"prompt": f"[standin tokens=400 tps=40 id={tag}] hi", "temperature": 0}
    with httpx.stream("POST", f"{cache_app.url}/chat", json=body, headers=NDJSON, timeout=30) as response:
        lines = response.iter_lines()
        stream_id = json.loads(next(lines))["streamId"]
        next(lines)  # a token: it is generating
        assert httpx.post(f"{cache_app.url}/chat/{stream_id}/cancel", timeout=10).status_code == 202
        assert json.loads(list(lines)[-1])["stopReason"] == "cancelled"
    again, _ = ask(cache_app, {**body, "prompt": body["prompt"]})
    assert again.headers["x-answer-cache"] == "miss" and calls(standin, tag) == 2


def test_callers_never_see_each_others_answers(standin, dynamodb):
    hashes, headers = caller_keys("ada", "bob")
    app = start_app(
        standin.url,
        **store_env(dynamodb),
        AUTH_MODE="api_key",
        API_KEY_HASHES=hashes,
        ANSWER_CACHE_SECONDS="600",
    )
    try:
        tag = label()
        body = {"prompt": f"[standin tokens=3 id={tag}] hi", "temperature": 0}
        assert ask(app, body, headers["ada"])[0].headers["x-answer-cache"] == "miss"
        wait_for_record(standin, tag, "complete")
        assert ask(app, body, headers["bob"])[0].headers["x-answer-cache"] == "miss"
        assert calls(standin, tag) == 2
        assert ask(app, body, headers["ada"])[0].headers["x-answer-cache"] == "hit"
        assert calls(standin, tag) == 2
    finally:
        app.stop()


def test_the_openai_api_is_served_from_the_cache_too(cache_app, standin):
    sdk = openai.OpenAI(base_url=f"{cache_app.url}/v1", api_key="local", timeout=30)
    tag = label()
    messages = [{"role": "user", "content": f"[standin tokens=5 id={tag}] hi"}]
    first = sdk.chat.completions.create(model=MODEL, messages=messages, temperature=0)
    wait_for_record(standin, tag, "complete")
    raw = sdk.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["x-answer-cache"] == "hit"
    chunks = list(raw.parse())
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == first.choices[0].message.content
    )
    assert chunks[-1].usage.completion_tokens == 0
    assert calls(standin, tag) == 1


def test_an_expired_answer_is_asked_again(standin, dynamodb):
    app = start_app(standin.url, **store_env(dynamodb), ANSWER_CACHE_SECONDS="1")
    try:
        tag = label()
        body = {"prompt": f"[standin tokens=3 id={tag}] hi", "temperature": 0}
        ask(app, body)
        wait_for_record(standin, tag, "complete")
        time.sleep(2.1)  # past the entry's expiry, whole seconds
        assert ask(app, body)[0].headers["x-answer-cache"] == "miss"
        assert calls(standin, tag) == 2
    finally:
        app.stop()


def test_the_cache_needs_the_store_and_must_not_outlive_it():
    with pytest.raises(SettingsError, match="needs STREAMS_TABLE"):
        from_env({"ANSWER_CACHE_SECONDS": "60"})
    with pytest.raises(SettingsError, match="STREAM_TTL_HOURS"):
        from_env({"ANSWER_CACHE_SECONDS": "7200", "STREAMS_TABLE": "t", "STREAM_TTL_HOURS": "1"})
    with pytest.raises(SettingsError, match="ANSWER_CACHE_SECONDS must be 0"):
        from_env({"ANSWER_CACHE_SECONDS": "-1"})


def test_an_answer_no_longer_stored_whole_is_asked_again_and_forgotten(cache_app, standin, dynamodb):
    tag = label()
    body = {"prompt": f"[standin tokens=3 id={tag}] hi", "temperature": 0}
    _, fresh = ask(cache_app, body)
    # Its end expired (DynamoDB's TTL deletes items one by one, in no order).
    table = dynamodb.client()
    table.delete_item(
        TableName=dynamodb.table, Key={"pk": {"S": f"s#{fresh[0]['streamId']}"}, "sk": {"S": "e"}}
    )
    again, lines = ask(cache_app, body)
    assert again.headers["x-answer-cache"] == "miss" and lines[-1]["stopReason"] == "end_turn"
    assert calls(standin, tag) == 2
    assert ask(cache_app, body)[0].headers["x-answer-cache"] == "hit"  # the new answer took its place


def test_a_store_that_cannot_be_read_costs_the_cache_never_the_answer(standin):
    from tests.harness import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = start_app(standin.url, AWS_ENDPOINT_URL_DYNAMODB=dead, STREAMS_TABLE="t", ANSWER_CACHE_SECONDS="60")
    try:
        tag = label()
        response, lines = ask(app, {"prompt": f"[standin tokens=4 id={tag}] hi", "temperature": 0})
        assert response.headers["x-answer-cache"] == "unavailable"
        assert lines[-1]["stopReason"] == "end_turn" and len(text_of(lines).split()) == 4
    finally:
        app.stop()


def test_a_draft_guardrail_is_never_cached_past(standin, dynamodb):
    # A DRAFT can be edited in place: what it let through once may not pass it now.
    app = start_app(standin.url, **store_env(dynamodb), ANSWER_CACHE_SECONDS="60", GUARDRAIL_ID="gr-draft")
    try:
        body = {"prompt": "[standin tokens=2] hi", "temperature": 0}
        assert ask(app, body)[0].headers["x-answer-cache"] == "ineligible"
    finally:
        app.stop()
