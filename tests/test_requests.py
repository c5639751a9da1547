"""Bad requests get a JSON error that names the problem and the field, with the right status."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest

from tests.harness import start_app

LONG = "x" * 2000


def assert_error(response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    for word in words:
        assert word in error["message"], error["message"]


def raw_exchange(app, request: bytes) -> tuple[str, dict]:
    """Send bytes as they are on a bare socket (clients tidy what these tests need untidy)."""
    host, port = app.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.decode("latin-1"), json.loads(body)


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
        ({"prompt": "a", "stopSequences": ["ok", ""]}, "stopSequences"),
        ({"prompt": "a", "system": " "}, "system"),
        ({"prompt": "a", "modelId": 7}, "modelId"),
        ({"prompt": "a", "topP": 1.01}, "topP"),
        ({"messages": [{"role": 1, "content": "x"}]}, "messages[0].role"),
        ({"messages": [["user", "x"]]}, "messages[0]"),
    ],
)
def test_invalid_fields_are_rejected_by_name(client, body, field):
    assert_error(client.post("/chat", json=body), 400, "invalid_request", f"'{field}'")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"prompt": "a", "temperature": NaN}', "temperature"),
        (b'{"prompt": "a", "topP": Infinity}', "topP"),
        (b'{"prompt": "a", "maxTokens": 1e400}', "maxTokens"),
    ],
)
def test_non_finite_numbers_are_rejected_by_name(client, raw, field):
    assert_error(client.post("/chat", content=raw), 400, "invalid_request", f"'{field}'")


def test_an_empty_body_says_so(client):
    assert_error(client.post("/chat", content=b" "), 400, "invalid_json", "empty")


def test_a_deeply_nested_body_is_400_not_500(client):
    assert_error(client.post("/chat", content=b"[" * 100_000), 400, "invalid_json", "nested")


@pytest.mark.parametrize("raw", [b"not json", b'{"prompt": ', b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_400(client, raw):
    assert_error(client.post("/chat", content=raw), 400, "invalid_json", "JSON")


# The default MAX_REQUEST_BYTES: within a Function URL's 6 MB, with room for attachments.
LIMIT = 6_000_000


def test_a_body_over_the_limit_is_413(client):
    response = client.post("/chat", json={"prompt": "x" * LIMIT})
    assert_error(response, 413, "request_too_large", f"{LIMIT} bytes")


def test_a_chunked_body_over_the_limit_is_413(client):
    def chunks():
        yield b'{"prompt": "'
        for _ in range(LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    assert_error(client.post("/chat", content=chunks()), 413, "request_too_large")


def test_a_body_of_exactly_the_limit_is_read_chunked_or_not(client):
    body = b'{"prompt": "' + b"x" * (LIMIT - 14) + b'"}'
    assert len(body) == LIMIT
    # The stand-in refuses a prompt this long, so reaching it (a 400 from Bedrock) shows it was read.
    for content in (body, iter([body[:1000], body[1000:]])):
        response = client.post("/chat", content=content)
        assert response.status_code != 413, response.text
    assert_error(client.post("/chat", content=iter([body, b" "])), 413, "request_too_large")


def test_a_chunked_body_is_limited_by_its_data_on_a_kept_alive_connection(app):
    # The first request is gathered past the first piece handed to the parser. The second's framing
    # takes it past the limit before its data does: it waits for its data, and is refused for it.
    first = json.dumps({"prompt": "x" * 150_000, "colour": "red"}).encode()
    second = b'{"prompt": "' + b"x" * LIMIT + b'"}'
    host, port = app.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /chat HTTP/1.1\r\nHost: relay\r\nContent-Length: %d\r\n\r\n%s" % (len(first), first)
        )
        sock.sendall(
            b"POST /chat HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n%s" % (len(second), second[: LIMIT - 5])
        )
        time.sleep(0.3)  # long enough for a thread to have taken the request too soon
        sock.sendall(second[LIMIT - 5 :] + b"\r\n0\r\n\r\n")
        sock.sendall(b"GET /nowhere HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        sock.settimeout(30)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3})", answer) == [b"400", b"413", b"404"], answer[-500:]
    assert b"request_too_large" in answer


def test_input_is_echoed_only_as_a_short_marked_excerpt(app, client):
    for body, field in (
        ({"prompt": "a", "modelId": "m" * 1_000_000}, "'modelId'"),
        ({"prompt": "a", "f" * 1_000_000: 1}, "unknown field"),
        ({"prompt": "a", "maxTokens": int("9" * 4299)}, "'maxTokens'"),
    ):
        response = client.post("/chat", json=body)
        assert_error(response, 400, "invalid_request", field, "characters)")
        assert len(response.text) < 500
        # No field of the log line carries the input whole (the metrics block is the service's own).
        line = app.log_for(response.headers["x-request-id"])
        line.pop("_aws")
        assert max(len(json.dumps(value)) for value in line.values()) < 400


def test_a_number_too_long_for_python_is_named_in_the_apis_words(client):
    response = client.post("/chat", content=b'{"prompt": "a", "maxTokens": ' + b"9" * 5000 + b"}")
    assert_error(response, 400, "invalid_json", "more than 4300 digits")
    assert "set_int_max_str_digits" not in response.text


@pytest.mark.parametrize(
    "chunks", [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n"], ids=["bad size", "no terminator"]
)
def test_a_malformed_chunked_body_is_400_json_and_logged_as_rejected(app, chunks):
    head, body = raw_exchange(
        app,
        b"POST /chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks,
    )
    assert head.startswith("HTTP/1.1 400"), head
    assert body["error"]["code"] == "bad_request"
    record = app.log_for(re.search(r"(?im)^x-request-id: (\S+)$", head).group(1))
    assert record["outcome"] == "rejected" and record["status"] == 400


def test_merged_slashes_are_not_redirected_to_a_client_chosen_host(app):
    # On a raw socket: HTTP clients tidy doubled slashes away before sending them.
    head, _ = raw_exchange(
        app, b"GET /static//chat.js HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    )
    head = head.lower()
    assert not head.startswith("http/1.1 3") and "location:" not in head and "evil.example" not in head


def test_an_allowed_model_other_than_the_default_is_used(standin):
    app = start_app(standin.url, MODEL_ID="model-a", ALLOWED_MODEL_IDS="model-a,model-b")
    try:
        response = httpx.post(
            f"{app.url}/chat", json={"prompt": "[standin tokens=2 id=pick-b]", "modelId": "model-b"}
        )
        assert response.status_code == 200
        assert [r.model_id for r in standin.records if r.scenario["id"] == "pick-b"] == ["model-b"]
        refused = httpx.post(f"{app.url}/chat", json={"prompt": "a", "modelId": "model-c"})
        assert_error(refused, 400, "invalid_request", "'modelId'", "model-a, model-b")
    finally:
        app.stop()


def test_a_wrong_method_is_405(client):
    assert_error(client.get("/chat"), 405, "method_not_allowed", "GET", "POST")
    assert_error(client.post("/healthz"), 405, "method_not_allowed", "POST")


def test_an_unknown_path_is_404(client):
    assert_error(client.get("/nope"), 404, "not_found", "/nope")


def test_the_service_stays_up_after_bad_requests(client):
    client.post("/chat", content=b"\x00" * 10)
    client.post("/chat", json={"prompt": LONG, "maxTokens": -1})
    assert client.post("/chat", json={"prompt": "ok [standin tokens=2]"}).status_code == 200


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"NOT A REQUEST LINE\r\n\r\n", "400", "bad_request"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "414", "uri_too_long"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 30000 + b"\r\n\r\n", "431", "headers_too_large"),
    ],
    ids=["bad request line", "long URL", "big header"],
)
def test_the_servers_own_refusals_are_json_with_a_request_id_and_a_log_line(app, request_bytes, status, code):
    head, body = raw_exchange(app, request_bytes)
    assert head.startswith(f"HTTP/1.1 {status} ") and "content-type: application/json" in head.lower()
    assert body["error"]["code"] == code and len(body["error"]["message"]) < 200
    request_id = re.search(r"(?im)^x-request-id: (\S+)$", head).group(1)
    record = app.log_for(request_id)
    assert record["outcome"] == "rejected" and record["status"] == int(status)


def test_a_whole_number_written_with_a_fraction_is_an_integer(client):
    # JSON has one number type; JSON Schema (and the OpenAPI document) counts 364.0 as an integer.
    response = client.post("/chat", json={"prompt": "hi [standin tokens=3]", "maxTokens": 364.0})
    assert response.status_code == 200, response.text
