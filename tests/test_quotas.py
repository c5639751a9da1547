"""Per-caller limits: two app processes stand for two Lambda environments counting in one table."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest
from bedrock_relay.settings import SettingsError, from_env

from standin.server import StandInServer
from tests.conftest import caller_keys, store_env, wait_for_record, wait_until
from tests.faults import FaultyProxy
from tests.harness import AppProcess, start_app
from tests.test_store import SSE, sse_events

CALLERS = (
    "full",
    "done",
    "left",
    "cancel",
    "crash",
    "budget",
    "sdk",
    "other",
    "past",
    "down",
    "race",
    "burst",
)
BUDGET = 50


@pytest.fixture(scope="module")
def keys() -> tuple[str, dict[str, dict[str, str]]]:
    return caller_keys(*CALLERS)


def limited_env(dynamodb, hashes: str, **extra: str) -> dict[str, str]:
    return {
        **store_env(dynamodb),
        "AUTH_MODE": "api_key",
        "API_KEY_HASHES": hashes,
        "MAX_CONCURRENT_STREAMS_PER_CALLER": "1",
        "DAILY_OUTPUT_TOKENS_PER_CALLER": str(BUDGET),
        "BEDROCK_MAX_ATTEMPTS": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def pair(standin: StandInServer, dynamodb, keys) -> Iterator[tuple[AppProcess, AppProcess]]:
    """Two environments of one deployment, each caller allowed one stream at a time and 50 tokens a day."""
    env = limited_env(dynamodb, keys[0])
    first, second = start_app(standin.url, **env), start_app(standin.url, **env)
    yield first, second
    first.stop()
    second.stop()


class Stream:
    """One caller's SSE stream, read on a thread until its first delta has arrived."""

    def __init__(self, app: AppProcess, headers: dict, prompt: str):
        self.events: list[dict] = []
        self.reached = threading.Event()
        self.status: int | None = None
        self.thread = threading.Thread(target=self._read, args=(app, headers, prompt), daemon=True)
        self.thread.start()
        assert self.reached.wait(10), self.status

    def _read(self, app: AppProcess, headers: dict, prompt: str) -> None:
        body = {"prompt": prompt}
        with httpx.stream("POST", f"{app.url}/chat", json=body, headers={**headers, **SSE}, timeout=30) as r:
            self.status = r.status_code
            try:
                for event in sse_events(r.iter_lines()):
                    self.events.append(event)
                    if event.get("id") == "1":
                        self.reached.set()
            except httpx.RemoteProtocolError:
                self.events.append({"event": "cut"})  # its server was killed mid-stream

    @property
    def stream_id(self) -> str:
        return self.events[0]["data"]["streamId"]


def ask(app: AppProcess, headers: dict, prompt: str = "[standin tokens=5] hi") -> httpx.Response:
    return httpx.post(f"{app.url}/chat", json={"prompt": prompt}, headers={**headers, **SSE}, timeout=30)


def usage(app: AppProcess, headers: dict) -> dict:
    response = httpx.get(f"{app.url}/usage", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def assert_too_many(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "too_many_streams"
    assert "1 of your streams are open" in response.json()["error"]["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 2  # RETRY_AFTER_SECONDS, the default 2


def test_a_second_stream_is_refused_in_another_environment_until_the_first_completes(pair, keys, standin):
    first, second = pair
    mine, other = keys[1]["full"], keys[1]["other"]
    stream = Stream(first, mine, "[standin tokens=40 tps=10 ttft=0 id=q-full] go")
    refused = ask(second, mine, "[standin tokens=5 id=q-full-refused] go")
    assert_too_many(refused)
    # Refused before Bedrock was called.
    assert not [r for r in standin.records if r.scenario["id"] == "q-full-refused"]
    line = second.log_for(refused.headers["x-request-id"])
    assert line["errorCode"] == "too_many_streams"
    # Counted as a refusal, never as the Bedrock throttling its alarm watches.
    assert (line["rejected"], line["throttles"]) == (1, 0)
    assert usage(second, mine)["activeStreams"] == 1
    # Another caller is not held back by this one's streams.
    assert ask(second, other).status_code == 200
    stream.thread.join(10)
    assert stream.events[-1]["event"] == "end"
    assert usage(second, mine)["activeStreams"] == 0
    again = ask(second, mine)
    assert again.status_code == 200, again.text


def test_a_slot_is_freed_when_a_stream_fails_before_it_starts(pair, keys):
    first, second = pair
    mine = keys[1]["done"]
    failed = ask(first, mine, "[standin error=ThrottlingException] go")
    assert failed.status_code == 429 and failed.json()["error"]["code"] == "ThrottlingException"
    assert usage(second, mine)["activeStreams"] == 0
    assert ask(second, mine).status_code == 200


def test_a_client_that_leaves_holds_its_slot_until_the_answer_it_left_is_finished(pair, keys, standin):
    # With the store on, a disconnect does not stop Bedrock (the answer is kept for a resume), so
    # the slot stays taken: leaving cannot be a way round the limit.
    first, second = pair
    mine = keys[1]["left"]
    prompt = {"prompt": "[standin tokens=30 tps=15 ttft=0 id=q-left] go"}
    with httpx.stream("POST", f"{first.url}/chat", json=prompt, headers={**mine, **SSE}, timeout=30) as r:
        for event in sse_events(r.iter_lines()):
            if event.get("id") == "2":
                break
    assert_too_many(ask(second, mine))
    wait_for_record(standin, "q-left", "complete", timeout=10)
    assert wait_until(lambda: usage(second, mine)["activeStreams"] == 0)
    assert ask(second, mine).status_code == 200


def test_a_cancelled_stream_frees_its_slot(pair, keys, standin):
    first, second = pair
    mine = keys[1]["cancel"]
    stream = Stream(first, mine, "[standin tokens=2000 tps=20 ttft=0 id=q-cancel] go")
    assert_too_many(ask(second, mine))
    cancel = httpx.post(f"{second.url}/chat/{stream.stream_id}/cancel", headers=mine, timeout=10)
    assert cancel.status_code == 202
    stream.thread.join(10)
    assert stream.events[-1]["data"]["stopReason"] == "cancelled"
    wait_for_record(standin, "q-cancel", "client_closed")
    # Freed as the end was sent: no waiting.
    seen = usage(second, mine)
    assert seen["activeStreams"] == 0
    # Bedrock sent no count for a cancelled stream: at least its deltas, or four characters a token.
    texts = [event["data"]["text"] for event in stream.events if event.get("event") == "token"]
    assert seen["outputTokens"] >= max(len(texts), -(-len("".join(texts)) // 4)) > len(texts)
    assert ask(second, mine).status_code == 200


def test_a_crashed_environment_leaks_its_slot_only_until_its_time_is_up(standin, dynamodb, pair, keys):
    _, second = pair
    mine = keys[1]["crash"]
    # An environment whose streams may last 3 s, and whose slots 1 s beyond: then Lambda would have
    # stopped it.
    env = limited_env(dynamodb, keys[0], MAX_STREAM_SECONDS="3", DEADLINE_MARGIN_SECONDS="1")
    doomed = start_app(standin.url, **env)
    try:
        Stream(doomed, mine, "[standin tokens=2000 tps=20 ttft=0 id=q-crash] go")
        taken_at = time.time()
        # Worker and arbiter at once, as when Lambda stops an environment: nothing gets to clean up.
        subprocess.run(["pkill", "-KILL", "-P", str(doomed.process.pid)], check=True)
        doomed.process.kill()
        assert_too_many(ask(second, mine))
        assert wait_until(lambda: ask(second, mine).status_code == 200, timeout=15)
        # Not freed by anything but its expiry: the stream's 3 s, and the margin.
        assert time.time() - taken_at >= 3
    finally:
        doomed.stop()


def test_the_daily_budget_is_counted_across_environments_and_refuses_before_bedrock(pair, keys, standin):
    first, second = pair
    mine = keys[1]["budget"]
    assert usage(first, mine)["outputTokens"] == 0
    for app in (first, second, first):  # 20 tokens each: 60 crosses 50 on the third
        assert ask(app, mine, "[standin tokens=20] go").status_code == 200
    seen = usage(second, mine)
    assert seen["outputTokens"] == 60
    assert seen["limits"] == {"concurrentStreams": 1, "dailyOutputTokens": BUDGET}
    assert seen["day"] == datetime.now(UTC).strftime("%Y-%m-%d")
    refused = ask(second, mine, "[standin tokens=5 id=q-over-budget] go")
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "budget_exhausted" and "(60)" in error["message"] and "50" in error["message"]
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    assert abs(int(refused.headers["retry-after"]) - (midnight - datetime.now(UTC)).total_seconds()) < 60
    assert seen["renewsAt"] == midnight.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert not [r for r in standin.records if r.scenario["id"] == "q-over-budget"]


def test_the_openai_sdk_gets_a_rate_limit_error_and_does_not_retry_a_spent_budget(pair, keys, standin):
    first, _ = pair
    mine = keys[1]["sdk"]
    client = openai.OpenAI(base_url=f"{first.url}/v1", api_key=mine["X-Api-Key"], max_retries=2)
    answer = client.chat.completions.create(
        model="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        messages=[{"role": "user", "content": "[standin tokens=60] go"}],
    )
    assert answer.usage.completion_tokens == 60
    calls = len(standin.records)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(
            model="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            messages=[{"role": "user", "content": "[standin tokens=5] go"}],
        )
    assert raised.value.code == "budget_exhausted"
    assert len(standin.records) == calls
    assert len([r for r in first.log_records() if r.get("errorCode") == "budget_exhausted"]) >= 1


def test_yesterdays_tokens_do_not_count_today(pair, keys, dynamodb):
    first, _ = pair
    mine = keys[1]["past"]
    assert ask(first, mine).status_code == 200  # makes the caller's item
    key = {"pk": {"S": f"u#api_key:{hash_name(keys, 'past')}"}, "sk": {"S": "usage"}}
    table = dynamodb.client()

    def count_on(days_ago: int, tokens: int) -> str:
        day = (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%d")
        table.update_item(
            TableName=dynamodb.table,
            Key=key,
            UpdateExpression="SET #day = :tokens",
            ExpressionAttributeNames={"#day": f"out:{day}"},
            ExpressionAttributeValues={":tokens": {"N": str(tokens)}},
        )
        return f"out:{day}"

    yesterday = count_on(1, 1_000_000)
    assert usage(first, mine)["outputTokens"] == 5
    # Older days' counters go at the next admission; yesterday's stays, for a stream past midnight.
    older = count_on(3, 7)
    assert ask(first, mine).status_code == 200
    item = table.get_item(TableName=dynamodb.table, Key=key)["Item"]
    assert yesterday in item and older not in item


def hash_name(keys, caller: str) -> str:
    return next(name for name in keys[0].split(",") if name.startswith(f"{caller}-")).split(":")[0]


def test_a_store_that_is_down_costs_the_limits_never_the_stream(standin, dynamodb, keys):
    proxy = FaultyProxy(int(dynamodb.url.rsplit(":", 1)[1]))
    app = start_app(standin.url, **limited_env(dynamodb, keys[0], AWS_ENDPOINT_URL_DYNAMODB=proxy.url))
    try:
        proxy.break_()
        answer = ask(app, keys[1]["down"], "[standin tokens=5] go")
        assert answer.status_code == 200
        assert list(sse_events(answer.text.splitlines()))[-1]["data"]["stopReason"] == "end_turn"
        assert app.log_for(answer.headers["x-request-id"])["limits"] == "unavailable"
        refused = httpx.get(f"{app.url}/usage", headers=keys[1]["down"], timeout=10)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable"
    finally:
        app.stop()
        proxy.close()


def test_usage_needs_sign_in(pair):
    first, _ = pair
    response = httpx.get(f"{first.url}/usage", timeout=10)
    assert response.status_code == 401


def at_once(apps, headers: dict, prompt: str, count: int = 8) -> list[httpx.Response]:
    """Start `count` streams of one caller in the same instant, alternating between the apps."""
    barrier = threading.Barrier(count)
    answers: list[httpx.Response] = []

    def start(app: AppProcess) -> None:
        barrier.wait()
        answers.append(ask(app, headers, prompt))

    threads = [threading.Thread(target=start, args=(apps[index % len(apps)],)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_streams_started_at_once_in_two_environments_get_one_slot_and_every_token_is_counted(pair, keys):
    _, second = pair
    mine = keys[1]["race"]
    answers = at_once(pair, mine, "[standin tokens=20 tps=10 ttft=0] go")
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] + [429] * 7, statuses
    assert {answer.json()["error"]["code"] for answer in answers if answer.status_code == 429} == {
        "too_many_streams"
    }
    assert usage(second, mine)["outputTokens"] == 20 and usage(second, mine)["activeStreams"] == 0


def test_limits_need_to_know_the_caller_and_where_to_count():
    keyed = {"AUTH_MODE": "api_key", "API_KEY_HASHES": "ci:" + "0" * 64}
    for limit in ("MAX_CONCURRENT_STREAMS_PER_CALLER", "DAILY_OUTPUT_TOKENS_PER_CALLER"):
        with pytest.raises(SettingsError, match=r"need AUTH_MODE .* and STREAMS_TABLE"):
            from_env({limit: "2", "STREAMS_TABLE": "t"})
        with pytest.raises(SettingsError, match=r"need AUTH_MODE .* and STREAMS_TABLE"):
            from_env({limit: "2", **keyed})
        with pytest.raises(SettingsError, match=rf"{limit} must be 0 \(no limit\) or more, got '-1'"):
            from_env({limit: "-1"})
        assert from_env({limit: "2", "STREAMS_TABLE": "t", **keyed}).caller_limits
    assert not from_env({}).caller_limits


def test_streams_started_at_once_under_the_limit_are_all_admitted(standin, dynamodb, keys):
    # Admissions that collide re-read and try again: none is refused while there is room.
    mine = keys[1]["burst"]
    env = limited_env(dynamodb, keys[0], MAX_CONCURRENT_STREAMS_PER_CALLER="8")
    apps = [start_app(standin.url, **env), start_app(standin.url, **env)]
    try:
        answers = at_once(apps, mine, "[standin tokens=5 tps=10 ttft=0] go")
        assert sorted(answer.status_code for answer in answers) == [200] * 8
        seen = usage(apps[0], mine)
        assert (seen["activeStreams"], seen["outputTokens"]) == (0, 40)
    finally:
        for app in apps:
            app.stop()
