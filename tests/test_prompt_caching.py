"""Prompt caching: cache points placed where a request asks, and the cache's token counts reported."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import wait_for_record

CONVERSATION = [
    {"role": "user", "content": "a long document"},
    {"role": "assistant", "content": "read it"},
    {"role": "user", "content": "[standin tokens=3 id=CACHE] and now?"},
]


def test_cache_points_go_after_the_system_prompt_and_the_nth_message(client, standin, app):
    messages = json.loads(json.dumps(CONVERSATION).replace("CACHE", "cache-points"))
    body = {"system": "long instructions", "messages": messages, "cache": {"system": True, "messages": 2}}
    answer = client.post("/chat", json=body, headers={"Accept": "application/x-ndjson"})
    assert answer.status_code == 200, answer.text
    record = wait_for_record(standin, "cache-points", "complete")
    assert record.cache_points == [("system", {"type": "default"}), (1, {"type": "default"})]
    # The first call writes the cache, and says so in the end event and the log line.
    end = json.loads(answer.text.splitlines()[-1])
    assert end["usage"]["cacheWriteInputTokens"] > 0
    assert (
        app.log_for(answer.headers["x-request-id"])["cacheWriteInputTokens"]
        == end["usage"]["cacheWriteInputTokens"]
    )


def test_a_longer_ttl_is_passed_on_and_reads_are_reported(client, standin):
    body = {"prompt": "[standin tokens=3 cached=2048 id=cache-ttl] hi", "cache": {"messages": 1, "ttl": "1h"}}
    answer = client.post("/chat", json=body, headers={"Accept": "application/json"})
    assert answer.json()["usage"]["cacheReadInputTokens"] == 2048
    assert wait_for_record(standin, "cache-ttl", "complete").cache_points == [
        (0, {"type": "default", "ttl": "1h"})
    ]


def test_without_cache_points_no_cache_counts_appear(client):
    usage = client.post(
        "/chat", json={"prompt": "[standin tokens=2] hi"}, headers={"Accept": "application/json"}
    )
    assert set(usage.json()["usage"]) == {"inputTokens", "outputTokens", "totalTokens"}


@pytest.mark.parametrize(
    ("cache", "words"),
    [
        ({"system": True}, "'cache.system' needs a 'system' prompt"),
        ({"messages": 2}, "'cache.messages' must be a message count, 1 to 1"),
        ({"messages": True}, "'cache.messages'"),
        ({"ttl": "1d", "messages": 1}, "'cache.ttl' must be one of 5m, 1h"),
        ({"tools": True}, "unknown field 'cache.tools'"),
        ([], "'cache' must be an object"),
    ],
)
def test_bad_cache_requests_are_refused_by_name(client, cache, words):
    answer = client.post("/chat", json={"prompt": "hi", "cache": cache})
    assert answer.status_code == 400
    assert words in answer.json()["error"]["message"]


def test_the_document_describes_cache_points(app):
    # So fuzzing reaches them too.
    document = httpx.get(f"{app.url}/openapi.json", timeout=10).json()
    assert "cache" in document["components"]["schemas"]["ChatRequest"]["properties"]
