"""Slow and stalled clients hold no stream thread: the server reads requests before a thread takes them."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from standin.server import StandInServer
from tests.conftest import wait_for_record, wait_until
from tests.harness import AppProcess, start_app

THREADS = 4
READ_TIMEOUT = 3


@pytest.fixture(scope="module")
def small_app(standin: StandInServer) -> Iterator[AppProcess]:
    """The app with four threads, so a handful of sockets could fill them, and short time limits."""
    process = start_app(
        standin.url,
        WEB_THREADS=str(THREADS),
        REQUEST_READ_TIMEOUT_SECONDS=str(READ_TIMEOUT),
        CLIENT_WRITE_TIMEOUT_SECONDS="1",
        MAX_TOKENS_LIMIT="200000",
        BEDROCK_MAX_ATTEMPTS="1",
    )
    yield process
    process.stop()


def connect(app: AppProcess) -> socket.socket:
    host, port = app.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)))


def nothing_received(sock: socket.socket) -> bool:
    """Tell whether the server has neither answered nor closed this socket yet."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    return False


def read_answer(sock: socket.socket) -> tuple[str, dict]:
    """Read until the server closes, and return the status line and JSON body."""
    sock.settimeout(READ_TIMEOUT + 10)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.decode("latin-1").split("\r\n")[0], json.loads(body)


def chat(app: AppProcess, prompt: str = "hello") -> httpx.Response:
    return httpx.post(f"{app.url}/chat", json={"prompt": prompt}, timeout=READ_TIMEOUT + 10)


def test_clients_that_send_part_of_a_head_take_no_thread(small_app):
    slow = [connect(small_app) for _ in range(THREADS * 4)]
    try:
        for sock in slow:
            sock.sendall(b"POST /chat HTTP/1.1\r\nHost: relay\r\nContent-Type: app")
        # With a thread blocked on each of those heads, neither of these would be answered.
        assert httpx.get(f"{small_app.url}/healthz", timeout=READ_TIMEOUT).json()["status"] == "ok"
        answer = chat(small_app)
        assert answer.status_code == 200
        assert "[error]" not in answer.text
        assert all(nothing_received(sock) for sock in slow)
        # Their time then runs out, and each is told so in JSON.
        for sock in slow:
            status, body = read_answer(sock)
            assert status == "HTTP/1.1 408 Request Timeout"
            assert body["error"]["code"] == "request_timeout"
            assert f"within {READ_TIMEOUT} seconds" in body["error"]["message"]
    finally:
        for sock in slow:
            sock.close()
    timeouts = [r for r in small_app.log_records() if r.get("errorCode") == "request_timeout"]
    assert len(timeouts) >= len(slow)
    assert all(r["outcome"] == "rejected" and r["receivedBytes"] > 0 for r in timeouts)


def test_a_body_that_trickles_takes_no_thread(small_app):
    body = json.dumps({"prompt": "hi"}).encode()
    head = (
        b"POST /chat HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    )
    slow = [connect(small_app) for _ in range(THREADS * 2)]
    try:
        for sock in slow:
            sock.sendall(head % len(body) + body[:5])
        assert chat(small_app).status_code == 200
        assert all(nothing_received(sock) for sock in slow)
        # The rest of a body, arriving in time, is served as usual.
        slow[0].sendall(body[5:])
        slow[0].settimeout(10)
        assert slow[0].recv(100).startswith(b"HTTP/1.1 200 OK")
    finally:
        for sock in slow:
            sock.close()


def test_idle_connections_take_no_thread_and_are_closed(small_app):
    idle = [connect(small_app) for _ in range(100)]
    try:
        assert chat(small_app).status_code == 200
        assert all(nothing_received(sock) for sock in idle)
        # A connection that never sent a byte is closed without an answer: nobody asked anything.
        idle[0].settimeout(READ_TIMEOUT + 10)
        assert idle[0].recv(100) == b""
    finally:
        for sock in idle:
            sock.close()


def test_healthz_answers_while_every_thread_streams_and_the_wait_is_logged(small_app, standin):
    streams = []
    try:
        with contextlib.ExitStack() as stack:
            for index in range(THREADS):
                prompt = f"[standin tokens=2000 tps=20 ttft=0 id=busy-{index}] go"
                response = stack.enter_context(
                    httpx.stream("POST", f"{small_app.url}/chat", json={"prompt": prompt}, timeout=30)
                )
                chunks = response.iter_raw()  # kept: a dropped iterator closes its response
                next(chunks)  # it is streaming: its thread is taken
                streams.append(chunks)
            health = httpx.get(f"{small_app.url}/healthz", timeout=5).json()
            assert health == {
                "status": "ok",
                "threads": THREADS,
                "threadsBusy": THREADS,
                "requestsWaiting": 0,
            }
            # One more request waits for a thread, until the busy streams end as their clients leave.
            queued = connect(small_app)
            body = b'{"prompt": "queued"}'
            queued.sendall(
                b"POST /chat HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            # The busy streams are let go only once the server holds the request as waiting:
            # released before it is read, it would find a free thread and wait for nothing.
            health_url = f"{small_app.url}/healthz"
            assert wait_until(lambda: httpx.get(health_url, timeout=5).json()["requestsWaiting"] == 1)
        for index in range(THREADS):
            wait_for_record(standin, f"busy-{index}", "client_closed")
        queued.settimeout(30)
        answer = b""
        while chunk := queued.recv(65536):
            answer += chunk
        queued.close()
    finally:
        streams.clear()
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 200 OK")
    request_id = next(
        line.split(": ")[1] for line in head.split("\r\n") if line.lower().startswith("x-request-id")
    )
    record = small_app.log_for(request_id)
    assert record["outcome"] == "complete"
    assert record["queueMs"] > 0
    saturated = [r for r in small_app.log_records() if r.get("event") == "saturated"]
    assert saturated and saturated[-1]["threads"] == THREADS and saturated[-1]["requestsWaiting"] >= 1


def test_a_client_that_stops_reading_is_let_go_and_bedrock_closed(small_app, standin):
    sock = connect(small_app)
    # A small receive window, so the server's writes stall soon after the client stops reading.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = json.dumps(
        {"prompt": "[standin tokens=200000 tps=0 ttft=0 id=stalled] go", "maxTokens": 200000}
    ).encode()
    sock.sendall(
        b"POST /chat HTTP/1.1\r\nHost: relay\r\nAccept: application/x-ndjson\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    try:
        # The client still holds its socket open; the server has given up on it and closed Bedrock.
        wait_for_record(standin, "stalled", "client_closed", timeout=30)
        record = small_app.wait_for_log(lambda r: r.get("outcome") == "client_disconnected")
        assert record["deltas"] < 200000
    finally:
        sock.close()


def test_a_body_promised_after_100_continue_is_bounded_too(small_app):
    with connect(small_app) as sock:
        sock.sendall(
            b"POST /chat HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
            b"Content-Length: 20\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.settimeout(READ_TIMEOUT + 10)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"]["code"] == "request_timeout"


def test_a_head_past_its_limit_is_refused_without_waiting_for_its_end(small_app):
    with connect(small_app) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n" + b"X-Filler: aaaaaaaaaaaaaaaa\r\n" * 3000)
        status, body = read_answer(sock)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert body["error"]["code"] == "headers_too_large"


def test_pipelined_requests_are_each_answered(small_app):
    with connect(small_app) as sock:
        request = b"GET /nowhere HTTP/1.1\r\nHost: relay\r\n\r\n"
        sock.sendall(request * 2 + b"GET /nowhere HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        sock.settimeout(10)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 404 NOT FOUND") == 3


def test_pipelined_requests_behind_large_bodies_are_each_answered(small_app):
    # Gathered past the first piece handed to the parser: the second request's start is still held
    # when the first is answered, and must begin the next request, not be lost.
    body = json.dumps({"prompt": "x" * 150_000, "colour": "red"}).encode()
    post = b"POST /chat HTTP/1.1\r\nHost: relay\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with connect(small_app) as sock:
        sock.sendall(post * 2 + b"GET /nowhere HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        sock.settimeout(READ_TIMEOUT + 10)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 400 BAD REQUEST") == 2, answer[:2000]
    assert answer.count(b"unknown field 'colour'") == 2
    assert answer.count(b"HTTP/1.1 404 NOT FOUND") == 1


def test_time_waiting_for_a_thread_is_in_every_log_line(small_app):
    answer = chat(small_app)
    record = small_app.log_for(answer.headers["x-request-id"])
    assert record["queueMs"] >= 0 and record["threads"] == THREADS
    assert 1 <= record["threadsBusy"] <= THREADS
