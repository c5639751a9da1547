"""A reasoning budget, asked for in the model family's own field, and the combinations Bedrock refuses."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import wait_for_record
from tests.harness import start_app


def test_a_budget_reaches_claude_as_its_thinking_field(client, standin):
    body = {"prompt": "[standin tokens=3 reasoning=2 id=budget] think", "reasoning": {"budgetTokens": 2048}}
    answer = client.post("/chat", json=body, headers={"Accept": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["reasoning"]  # reasoning stays apart from the answer, as always
    record = wait_for_record(standin, "budget", "complete")
    assert record.extra == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert record.inference["maxTokens"] > 2048


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"temperature": 0.2}, "'temperature' cannot be set together with 'reasoning'"),
        ({"topP": 0.9}, "'topP' cannot be set together with 'reasoning'"),
        ({"maxTokens": 2048}, "'maxTokens' must be more than 'reasoning.budgetTokens'"),
        ({"reasoning": {"budgetTokens": 100}}, "at least 1024"),
        ({"reasoning": {"budget": 2048}}, "'reasoning' must be an object with 'budgetTokens'"),
    ],
)
def test_combinations_bedrock_refuses_are_refused_first(client, extra, words):
    body = {"prompt": "hi", "reasoning": {"budgetTokens": 2048}, **extra}
    answer = client.post("/chat", json=body)
    assert answer.status_code == 400
    assert words in answer.json()["error"]["message"]


def test_a_model_without_a_reasoning_budget_is_named(standin):
    app = start_app(standin.url, MODEL_ID="amazon.nova-pro-v1:0")
    try:
        answer = httpx.post(f"{app.url}/chat", json={"prompt": "hi", "reasoning": {"budgetTokens": 2048}})
        assert answer.status_code == 400
        assert "'reasoning' is not available for 'amazon.nova-pro-v1:0'" in answer.json()["error"]["message"]
    finally:
        app.stop()


def test_redacted_reasoning_is_reported_as_such_never_dropped(client, app):
    prompt = "[standin tokens=3 reasoning=2 redacted=2] think"
    events = client.post("/chat", json={"prompt": prompt}, headers={"Accept": "application/x-ndjson"})
    lines = [json.loads(line) for line in events.text.splitlines()]
    assert [line["type"] for line in lines].count("reasoning") == 2  # the readable reasoning still comes
    assert lines[-1]["type"] == "end" and lines[-1]["reasoningRedacted"] == 2
    assert app.log_for(events.headers["x-request-id"])["reasoningRedacted"] == 2
    answer = client.post("/chat", json={"prompt": prompt}, headers={"Accept": "application/json"}).json()
    assert answer["reasoningRedacted"] == 2 and answer["reasoning"]
    plain = client.post(
        "/chat",
        json={"prompt": "[standin tokens=3 reasoning=2] think"},
        headers={"Accept": "application/json"},
    )
    assert "reasoningRedacted" not in plain.json()
