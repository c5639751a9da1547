"""Bedrock's failures reach the client: a real status before the stream, an in-band error inside it."""

from __future__ import annotations

import json
import logging

import pytest
from bedrock_relay.app import create_app
from httpx_sse import connect_sse

from tests.test_requests import assert_error


@pytest.mark.parametrize(
    ("exception", "status"),
    [
        ("ValidationException", 400),
        ("ResourceNotFoundException", 404),
        ("ThrottlingException", 429),
        ("ModelNotReadyException", 503),
        ("ServiceUnavailableException", 503),
        ("ModelTimeoutException", 504),
        ("AccessDeniedException", 502),
        ("InternalServerException", 502),
        ("ModelErrorException", 502),
    ],
)
def test_errors_before_the_stream_get_a_real_status(client, exception, status):
    response = client.post("/chat", json={"prompt": f"[standin error={exception}]"})
    assert_error(response, status, exception, "stand-in acted out")
    assert response.headers["x-request-id"]
    if status == 429:
        assert int(response.headers["retry-after"]) >= 1
    else:
        assert "retry-after" not in response.headers


def test_bedrocks_own_retry_after_is_passed_on(client):
    response = client.post("/chat", json={"prompt": "[standin error=ThrottlingException retry_after=7]"})
    assert_error(response, 429, "ThrottlingException")
    assert response.headers["retry-after"] == "7"


STREAM_ERRORS = [
    ("internalServerException", True),
    ("modelStreamErrorException", True),
    ("validationException", False),
    ("throttlingException", True),
    ("serviceUnavailableException", True),
]


@pytest.mark.parametrize(("code", "retryable"), STREAM_ERRORS)
def test_errors_inside_the_stream_become_an_error_event(client, code, retryable):
    prompt = {"prompt": f"[standin stream_error={code} after=3 tokens=10]"}
    with connect_sse(client, "POST", "/chat", json=prompt) as source:
        assert source.response.status_code == 200
        events = list(source.iter_sse())
    assert [e.event for e in events] == ["start", "token", "token", "token", "error"]
    error = json.loads(events[-1].data)
    assert error["code"] == code
    assert error["retryable"] is retryable
    assert error["message"]


@pytest.mark.parametrize(("code", "_"), STREAM_ERRORS)
def test_errors_inside_the_stream_end_plain_text_with_an_error_line(client, code, _):
    text = client.post("/chat", json={"prompt": f"[standin stream_error={code} after=2]"}).text
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 2 and len(lines[0].split()) == 2
    assert lines[-1].startswith(f"[error] {code}: ")


@pytest.mark.parametrize("how", ["clean", "midframe"])
def test_a_truncated_stream_is_an_error_not_a_complete_answer(client, how):
    prompt = {"prompt": f"[standin truncate={how} after=4]"}
    with connect_sse(client, "POST", "/chat", json=prompt) as source:
        events = list(source.iter_sse())
    assert [e.event for e in events][-1] == "error"
    assert json.loads(events[-1].data)["code"] == "truncated"
    text = client.post("/chat", json=prompt).text
    assert text.splitlines()[-1].startswith("[error] truncated: ")
    ndjson = client.post("/chat", json=prompt, headers={"Accept": "application/x-ndjson"}).text
    assert json.loads(ndjson.splitlines()[-1])["type"] == "error"


def test_a_failed_stream_in_json_mode_gets_a_502(client):
    response = client.post(
        "/chat",
        json={"prompt": "[standin stream_error=modelStreamErrorException after=2]"},
        headers={"Accept": "application/json"},
    )
    assert_error(response, 502, "modelStreamErrorException")


def test_an_error_line_starts_on_its_own_line(client):
    text = client.post("/chat", json={"prompt": "[standin truncate=clean after=1]"}).text
    first, second = text.splitlines()
    assert "[error]" not in first and second.startswith("[error] ")


def test_a_rejection_is_logged_with_the_model_the_format_and_the_reason(app, client):
    response = client.post(
        "/chat",
        json={"prompt": "[standin error=ThrottlingException]"},
        headers={"Accept": "text/event-stream"},
    )
    record = app.log_for(response.headers["x-request-id"])
    assert record["status"] == 429 and record["outcome"] == "rejected"
    assert record["modelId"] and record["format"] == "text/event-stream"
    assert record["errorCode"] == "ThrottlingException" and "stand-in acted out" in record["errorMessage"]
    assert record["attempts"] == 1
    assert record["time"].endswith("+00:00")


def test_an_in_stream_error_is_logged_with_its_message_and_the_deltas_relayed(app, client):
    response = client.post("/chat", json={"prompt": "[standin stream_error=throttlingException after=3]"})
    record = app.log_for(response.headers["x-request-id"])
    assert record["outcome"] == "error" and record["deltas"] == 3
    assert record["errorCode"] == "throttlingException" and record["errorMessage"]


class CrashingBedrock:
    """A Bedrock client with a bug no handler expects."""

    def converse_stream(self, **_: object) -> None:
        raise RuntimeError("a bug in the client")


def test_an_unexpected_crash_is_a_json_500_logged_as_an_internal_error():
    lines: list[dict] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(json.loads(record.getMessage()))
    requests_log = logging.getLogger("bedrock_relay.requests")
    requests_log.addHandler(handler)
    try:
        client = create_app({"BEDROCK_CLIENT": CrashingBedrock()}).test_client()
        response = client.post("/chat", json={"prompt": "hi"})
    finally:
        requests_log.removeHandler(handler)
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    error = response.json["error"]
    assert error["code"] == "internal_error" and response.headers["x-request-id"] in error["message"]
    assert "a bug in the client" not in error["message"]
    assert [(line["status"], line["outcome"]) for line in lines] == [(500, "internal_error")]
