"""The stream is real: incremental, bounded by the deadline, stopped on disconnect, alive through silences."""

from __future__ import annotations

import json
import socket
import time
import uuid

import httpx
import pytest

from standin.scenarios import STAMP
from tests.conftest import wait_for_record
from tests.harness import start_app

SSE = {"Accept": "text/event-stream"}


def tag() -> str:
    return uuid.uuid4().hex[:12]


def test_tokens_leave_the_relay_while_the_stand_in_is_still_generating(app, standin):
    label = tag()
    arrivals = []  # (arrival on time.monotonic(), the token's emit time, stamped by the stand-in)
    prompt = f"[standin id={label} tokens=20 tps=10 stamp=1]"
    with httpx.stream("POST", f"{app.url}/chat", json={"prompt": prompt}) as r:
        for chunk in r.iter_text():
            arrivals += [(time.monotonic(), float(emit)) for _, emit in STAMP.findall(chunk)]
    wait_for_record(standin, label, "complete")
    emitted = [emit for _, emit in arrivals]
    assert len(emitted) == 20 and emitted == sorted(emitted)
    # Order, on the one clock both processes share: the first token reached the client before
    # the stand-in wrote the last, and no token waited for the stand-in to write five more.
    assert arrivals[0][0] < emitted[-1]
    late = [i for i, (arrival, _) in enumerate(arrivals[:-5]) if arrival > emitted[i + 5]]
    assert not late, f"tokens {late} were held back and sent in batches"


def read_until_tokens(response: httpx.Response, count: int) -> None:
    seen = 0
    for line in response.iter_lines():
        if line.startswith("event: token"):
            seen += 1
            if seen == count:
                return


def test_client_disconnect_closes_the_bedrock_connection(app, standin):
    label = tag()
    with httpx.stream(
        "POST", f"{app.url}/chat", json={"prompt": f"[standin id={label} tokens=400 tps=20]"}, headers=SSE
    ) as r:
        request_id = r.headers["x-request-id"]
        read_until_tokens(r, 3)
    # Closed by the relay long before its 400 tokens were written: the client's leaving stopped it.
    record = wait_for_record(standin, label, "client_closed", timeout=5)
    assert record.tokens_sent < 400
    record = app.log_for(request_id)
    assert record["outcome"] == "client_disconnected"
    assert record["deltas"] >= 3 and record["outputTokens"] is None


def test_disconnect_during_a_silence_is_seen_without_writing(app, standin):
    label = tag()
    prompt = f"[standin id={label} tokens=10 after=2 silence=30]"
    # Plain text has no heartbeats, so only the app's own check can notice the client leaving.
    with httpx.stream("POST", f"{app.url}/chat", json={"prompt": prompt}) as r:
        next(r.iter_raw())
    # Closed within the 30 s silence, when nothing was being written to the client.
    record = wait_for_record(standin, label, "client_closed", timeout=5)
    assert record.tokens_sent == 2


def raw_request(app, body: dict, headers: dict) -> socket.socket:
    """Send a /chat request on a bare socket, so the test controls reading and closing."""
    host, port = app.url.removeprefix("http://").split(":")
    sock = socket.socket()
    # A small receive window makes a client that stops reading block the server's writes quickly.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    payload = json.dumps(body).encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock.sendall(
        f"POST /chat HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(payload)}\r\n{head}\r\n".encode()
        + payload
    )
    return sock


def test_disconnect_before_the_first_write_still_closes_bedrock(app, standin):
    label = tag()
    sock = raw_request(app, {"prompt": f"[standin id={label} tokens=200 tps=20 ttft=0.5]"}, SSE)
    sock.close()
    record = wait_for_record(standin, label, "client_closed", timeout=5)
    assert record.tokens_sent < 200


def test_disconnect_while_waiting_for_a_json_answer_closes_bedrock(app, standin):
    label = tag()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{app.url}/chat",
            json={"prompt": f"[standin id={label} tokens=200 tps=20]"},
            headers={"Accept": "application/json"},
            timeout=1,
        )
    record = wait_for_record(standin, label, "client_closed", timeout=5)
    assert record.tokens_sent < 200


def test_a_client_that_stops_reading_is_let_go_at_the_deadline(app, standin):
    label = tag()
    headers = {**SSE, **lambda_context(6.5)}
    sock = raw_request(app, {"prompt": f"[standin id={label} tokens=2000000 tps=0]"}, headers)
    try:
        # Never read: the app's writes block once the socket buffers fill up, long before
        # the deadline 1.5 s from now, so only a bounded write can end the stream.
        record = wait_for_record(standin, label, "client_closed", timeout=12)
        assert record.tokens_sent < 2000000
    finally:
        sock.close()


def test_heartbeats_fill_a_silence(app):
    prompt = {"prompt": "[standin tokens=3 after=1 silence=1.5]"}
    # HEARTBEAT_SECONDS is 0.5 for these tests; tests/test_relay_core.py checks the cadence exactly.
    sse = httpx.post(f"{app.url}/chat", json=prompt, headers=SSE, timeout=10).text
    assert ": ping\n\n" in sse.split("event: token")[1]  # in the silence, after the first token
    ndjson = httpx.post(f"{app.url}/chat", json=prompt, headers={"Accept": "application/x-ndjson"}).text
    types = [json.loads(line)["type"] for line in ndjson.splitlines()]
    assert types.index("ping") > types.index("token")
    assert types[-1] == "end"


def test_no_heartbeats_while_tokens_flow(app):
    sse = httpx.post(f"{app.url}/chat", json={"prompt": "[standin tokens=30 tps=30]"}, headers=SSE).text
    assert ": ping" not in sse


def lambda_context(seconds_left: float) -> dict:
    deadline_ms = int((time.time() + seconds_left) * 1000)
    return {"x-amzn-lambda-context": json.dumps({"request_id": f"lambda-{tag()}", "deadline": deadline_ms})}


def test_the_stream_ends_cleanly_before_the_lambda_deadline(app, standin):
    label = tag()
    # DEADLINE_MARGIN_SECONDS defaults to 5: the stream must end ~1.5 s from now.
    headers = {**SSE, **lambda_context(6.5)}
    lambda_deadline = json.loads(headers["x-amzn-lambda-context"])["deadline"] / 1000
    response = httpx.post(
        f"{app.url}/chat", json={"prompt": f"[standin id={label} tokens=500 tps=20]"}, headers=headers
    )
    # Ended by the app, not cut by Lambda: after the margin began, before Lambda's deadline.
    assert lambda_deadline - 5 <= time.time() < lambda_deadline
    assert response.headers["x-request-id"] == json.loads(headers["x-amzn-lambda-context"])["request_id"]
    last = response.text.strip().split("\n\n")[-1]
    assert last.startswith("event: end")
    assert json.loads(last.split("data: ", 1)[1])["stopReason"] == "deadline"
    wait_for_record(standin, label, "client_closed")
    assert app.log_for(response.headers["x-request-id"])["outcome"] == "deadline"


def test_outside_lambda_a_client_sent_lambda_context_is_ignored(standin):
    outside = start_app(standin.url)
    try:
        forged = {"x-amzn-lambda-context": json.dumps({"request_id": "forged-id", "deadline": 1})}
        response = httpx.post(f"{outside.url}/chat", json={"prompt": "[standin tokens=2]"}, headers=forged)
        assert response.status_code == 200 and response.headers["x-request-id"] != "forged-id"
    finally:
        outside.stop()


def test_plain_text_marks_a_deadline_stop(app):
    response = httpx.post(
        f"{app.url}/chat", json={"prompt": "[standin tokens=500 tps=20]"}, headers=lambda_context(6)
    )
    assert response.text.splitlines()[-1].startswith("[error] deadline: ")


def test_logs_carry_metadata_and_never_text(app):
    secret = f"SECRETPROMPT{tag()}"
    # Multi-byte answer words cannot turn up in a log line by chance.
    response = httpx.post(
        f"{app.url}/chat", json={"prompt": f"{secret} [standin tokens=8 text=unicode]"}, headers=SSE
    )
    record = app.log_for(response.headers["x-request-id"])
    assert record["outcome"] == "complete" and record["status"] == 200
    assert record["format"] == "text/event-stream" and record["stopReason"] == "end_turn"
    assert record["outputTokens"] == 8 and record["ttftMs"] <= record["durationMs"]
    tokens = [json.loads(line[6:])["text"].strip() for line in response.text.splitlines() if '"text"' in line]
    assert len(tokens) == 8
    log = app.log_path.read_text() + json.dumps(app.log_records(), ensure_ascii=False)
    assert secret not in log
    assert not [token for token in tokens if len(token) > 1 and token in log]


@pytest.fixture(scope="module")
def tight_app(standin):
    """The same server with every timer shrunk: worker 2 s, Bedrock read 1.5 s, stream cap 4 s."""
    process = start_app(
        standin.url,
        GUNICORN_CMD_ARGS="--timeout 2",
        BEDROCK_READ_TIMEOUT_SECONDS="1.5",
        MAX_STREAM_SECONDS="4",
        HEARTBEAT_SECONDS="0.3",
        BEDROCK_MAX_ATTEMPTS="1",
    )
    yield process
    process.stop()


def test_a_stream_outlives_the_worker_timeout(tight_app):
    started = time.monotonic()
    text = httpx.post(f"{tight_app.url}/chat", json={"prompt": "[standin tokens=35 tps=10]"}, timeout=10).text
    assert time.monotonic() - started > 3  # longer than gunicorn's --timeout 2
    assert len(text.split()) == 35 and "[error]" not in text


def test_the_sync_worker_would_cut_the_same_stream(standin):
    # Proves the test above can fail: gunicorn's default worker kills a request at --timeout.
    sync = start_app(standin.url, GUNICORN_CMD_ARGS="--timeout 2 --worker-class sync --threads 1")
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(f"{sync.url}/chat", json={"prompt": "[standin tokens=60 tps=10]"}, timeout=15)
    finally:
        sync.stop()


def test_a_silence_shorter_than_the_read_timeout_survives(tight_app):
    response = httpx.post(
        f"{tight_app.url}/chat", json={"prompt": "[standin tokens=4 after=2 silence=1.2]"}, headers=SSE
    )
    assert ": ping" in response.text and "event: end" in response.text


def test_a_silence_longer_than_the_read_timeout_is_an_error(tight_app):
    text = httpx.post(f"{tight_app.url}/chat", json={"prompt": "[standin tokens=4 after=2 silence=3]"}).text
    assert text.splitlines()[-1].startswith("[error] read_timeout: ")


def test_max_stream_seconds_bounds_a_stream_without_a_lambda_deadline(tight_app, standin):
    label = tag()
    started = time.monotonic()
    text = httpx.post(
        f"{tight_app.url}/chat", json={"prompt": f"[standin id={label} tokens=500 tps=20]"}, timeout=10
    ).text
    assert time.monotonic() - started >= 4  # never before MAX_STREAM_SECONDS
    assert text.splitlines()[-1].startswith("[error] deadline: ")
    assert wait_for_record(standin, label, "client_closed").tokens_sent < 500
