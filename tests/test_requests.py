"""Bad requests get a JSON error that names the problem and the field, with the right status."""

from __future__ import annotations

import pytest

LONG = "x" * 2000


def assert_error(response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    for word in words:
        assert word in error["message"], error["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": "a", "messages": []}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "a", "colour": "red"}, "colour"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]},
            "messages[1].role",
        ),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}, "messages"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "x", "name": "n"}]}, "messages[0]"),
        ({"prompt": "a", "system": 1}, "system"),
        ({"prompt": "a", "modelId": "not-allowed"}, "modelId"),
        ({"prompt": "a", "maxTokens": 0}, "maxTokens"),
        ({"prompt": "a", "maxTokens": 10**9}, "maxTokens"),
        ({"prompt": "a", "maxTokens": 1.5}, "maxTokens"),
        ({"prompt": "a", "maxTokens": True}, "maxTokens"),
        ({"prompt": "a", "temperature": 1.5}, "temperature"),
        ({"prompt": "a", "temperature": "hot"}, "temperature"),
        ({"prompt": "a", "topP": -0.1}, "topP"),
        ({"prompt": "a", "stopSequences": ["a", "b", "c", "d", "e"]}, "stopSequences"),
        ({"prompt": "a", "stopSequences": "stop"}, "stopSequences"),
        ({"prompt": "a", "stopSequences": [1]}, "stopSequences"),
    ],
)
def test_invalid_fields_are_rejected_by_name(client, body, field):
    assert_error(client.post("/chat", json=body), 400, "invalid_request", f"'{field}'")


@pytest.mark.parametrize("raw", [b"not json", b'{"prompt": ', b"[1, 2]", b'"text"', b"\xff\xfe", b""])
def test_a_body_that_is_not_a_json_object_is_400(client, raw):
    assert_error(client.post("/chat", content=raw), 400, "invalid_json", "JSON")


def test_a_body_over_the_limit_is_413(client):
    response = client.post("/chat", json={"prompt": "x" * (1024 * 1024 + 1)})
    assert_error(response, 413, "request_too_large", "1048576 bytes")


def test_a_wrong_method_is_405(client):
    assert_error(client.get("/chat"), 405, "method_not_allowed", "GET", "POST")
    assert_error(client.post("/healthz"), 405, "method_not_allowed", "POST")


def test_an_unknown_path_is_404(client):
    assert_error(client.get("/nope"), 404, "not_found", "/nope")


def test_the_service_stays_up_after_bad_requests(client):
    client.post("/chat", content=b"\x00" * 10)
    client.post("/chat", json={"prompt": LONG, "maxTokens": -1})
    assert client.post("/chat", json={"prompt": "ok [standin tokens=2]"}).status_code == 200
