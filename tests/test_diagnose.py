"""The streaming self-test: GET /diag/stream, and `invoke --diagnose` reading it, directly or buffered."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from relay_client import invoke


class BufferingHop(BaseHTTPRequestHandler):
    """A proxy that reads the whole response before it sends any of it, as a misconfigured hop does."""

    upstream = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        answer = httpx.get(self.upstream + self.path, headers=dict(self.headers), timeout=60)
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers["content-type"])
        self.send_header("Content-Length", str(len(answer.content)))
        self.send_header("Via", "1.1 test-buffering-hop")
        self.end_headers()
        self.wfile.write(answer.content)


@pytest.fixture
def buffering_hop(app) -> Iterator[str]:
    handler = type("Hop", (BufferingHop,), {"upstream": app.url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_direct_stream_arrives_as_sent(app, capsys):
    assert invoke.main(["--diagnose", app.url, "--seconds", "2"]) == 0
    report = capsys.readouterr().out
    assert "verdict: streams as sent" in report
    assert "3 lines in 3 reads" in report  # one line a second, each in its own read


def test_a_buffering_hop_is_flagged_and_named(buffering_hop, capsys):
    assert invoke.main(["--diagnose", buffering_hop, "--seconds", "2"]) == invoke.BUFFERED
    report = capsys.readouterr().out
    assert "verdict: buffered" in report
    assert "Content-Length" in report and "test-buffering-hop" in report


def test_the_self_test_is_timestamped_lines_then_a_last(app):
    with httpx.stream("GET", f"{app.url}/diag/stream?seconds=2&pad=600", timeout=30) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert "content-length" not in response.headers
        lines = [json.loads(line) for line in response.iter_lines()]
        request_id = response.headers["x-request-id"]
    assert lines[0] == {"pad": " " * 600}
    assert [line["seq"] for line in lines[1:]] == [0, 1, 2]
    assert [line["last"] for line in lines[1:]] == [False, False, True]
    sent = [line["sentAt"] for line in lines[1:]]
    assert sent == sorted(sent)
    log = app.log_for(request_id)
    assert (log["api"], log["outcome"], log["seconds"]) == ("diag", "complete", 2)


@pytest.mark.parametrize("query", ["seconds=0", "seconds=31", "seconds=abc", "pad=9000", "pad=-1"])
def test_bad_arguments_are_refused_by_name(app, query):
    response = httpx.get(f"{app.url}/diag/stream?{query}", timeout=10)
    assert response.status_code == 400
    assert f"'{query.split('=')[0]}' must be a whole number" in response.json()["error"]["message"]


def test_a_prompt_is_needed_without_diagnose(capsys):
    with pytest.raises(SystemExit):
        invoke.main(["http://127.0.0.1:1"])
    assert "a PROMPT is needed, or --diagnose" in capsys.readouterr().err
