"""stream-chat.js in real headless Chromium: the SSE parser, and how streamChat fails on odd answers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from bedrock_relay.api_keys import key_hash

from tests.browser import CHROMIUM, MISSING_CHROMIUM
from tests.conftest import wait_for_record
from tests.harness import start_app

if not Path(CHROMIUM).exists():
    pytest.skip(MISSING_CHROMIUM, allow_module_level=True)

from playwright.sync_api import expect

STREAM = "event: token\nid: 1\ndata: a\n\nevent: end\ndata: b\n\n"
# Each input, and the (type, data, last event id) events it must give.
PARSER_CASES = [
    ("LF", STREAM, [["token", "a", "1"], ["end", "b", "1"]]),
    ("CRLF", STREAM.replace("\n", "\r\n"), [["token", "a", "1"], ["end", "b", "1"]]),
    ("CR", STREAM.replace("\n", "\r"), [["token", "a", "1"], ["end", "b", "1"]]),
    ("mixed endings", "data: a\r\ndata: b\rdata: c\n\r\n", [["message", "a\nb\nc", ""]]),
    (
        "multi-line data",
        "data: one\ndata:two\ndata:  three\ndata\n\n",
        [["message", "one\ntwo\n three\n", ""]],
    ),
    ("comment", ": ping\n\n: ping\ndata: x\n\n", [["message", "x", ""]]),
    ("event without data", "event: token\n\nevent: end\ndata: y\n\n", [["end", "y", ""]]),
    ("unfinished last event dropped", "data: a\n\ndata: b\n", [["message", "a", ""]]),
    ("one BOM stripped", "\ufeffdata: a\n\n", [["message", "a", ""]]),
    ("a second BOM is a field name", "\ufeff\ufeffdata: a\n\n", []),
    (
        "ids carry over, NUL ids ignored, empty id resets",
        "id: 7\ndata: a\n\nid: 8\0x\ndata: b\n\nid\ndata: c\n\n",
        [["message", "a", "7"], ["message", "b", "7"], ["message", "c", ""]],
    ),
]

# Feeds each input whole, one character at a time, and cut in two at every point.
RUN_PARSER_CASES = """async (cases) => {
  const { SseParser } = await import("/static/stream-chat.js");
  const failures = [];
  for (const [name, input, expected] of cases) {
    const cuts = [[input], [...input]];
    for (let i = 0; i <= input.length; i++) cuts.push([input.slice(0, i), input.slice(i)]);
    for (const pieces of cuts) {
      const events = [];
      const parser = new SseParser((type, data, id) => events.push([type, data, id]));
      for (const piece of pieces) parser.push(piece);
      parser.finish();
      if (JSON.stringify(events) !== JSON.stringify(expected)) failures.push({ name, pieces, events });
    }
  }
  return failures;
}"""


def test_the_parser_gives_the_same_events_wherever_the_input_is_cut(page, app):
    page.goto(app.url)
    failures = page.evaluate(RUN_PARSER_CASES, PARSER_CASES)
    assert not failures, f"{len(failures)} cuts gave other events, e.g. {failures[:3]}"


def test_an_on_event_that_throws_closes_the_stream_so_the_server_stops(page, app, standin):
    label = uuid.uuid4().hex[:12]
    page.goto(app.url)
    thrown = page.evaluate(
        """async (prompt) => {
          const { streamChat } = await import("/static/stream-chat.js");
          const onEvent = (event) => { if (event.type === "token") throw new Error("page bug"); };
          const outcome = streamChat("/chat", { prompt }, { onEvent });
          return outcome.then(() => "resolved", (error) => error.message);
        }""",
        f"[standin id={label} tokens=400 tps=20]",
    )
    assert thrown == "page bug"
    record = wait_for_record(standin, label, "client_closed")
    assert record.tokens_sent < 400


@pytest.mark.parametrize(
    ("status", "content_type", "body", "shown"),
    [
        (
            502,
            "text/html",
            "<h1>Bad Gateway</h1>",
            "http_error (HTTP 502): no JSON error in the answer: <h1>Bad Gateway",
        ),
        (
            500,
            "application/json",
            '{"error": "boom"}',
            'http_error (HTTP 500): no JSON error in the answer: {"error"',
        ),
        (200, "text/html", "<p>Sign in</p>", "unexpected_response: HTTP 200 text/html: <p>Sign in</p>"),
        (
            200,
            "text/event-stream",
            "event: token\ndata: {oops\n\n",
            "bad_event: a token event is not JSON: {oops",
        ),
    ],
)
def test_an_answer_that_is_not_the_relay_s_is_shown_clearly(page, app, status, content_type, body, shown):
    page.route("**/chat", lambda route: route.fulfill(status=status, content_type=content_type, body=body))
    page.goto(app.url)
    page.fill("#prompt", "Hi")
    page.press("#prompt", "Enter")
    expect(page.locator(".turn .message")).to_contain_text(f"Error {shown}")
    expect(page.locator(".turn.unsent")).to_have_count(1)


CALL_WITH_TOKEN = """async ({ token }) => {
  const { streamChat, ChatError } = await import("/static/stream-chat.js");
  let asked = 0;
  const getToken = async () => { asked += 1; return token; };
  const results = [];
  for (let i = 0; i < 2; i++) {
    try {
      const last = await streamChat("/chat", { prompt: "hi [standin tokens=2]" }, { getToken });
      results.push(last.type);
    } catch (error) {
      results.push(error instanceof ChatError ? `${error.status} ${error.code}` : String(error));
    }
  }
  return { asked, results };
}"""


def test_get_token_is_asked_for_on_every_request_and_sent_as_a_bearer(page, standin):
    key = "brk_browser-test-key"
    auth_app = start_app(standin.url, AUTH_MODE="api_key", API_KEY_HASHES=f"page:{key_hash(key)}")
    try:
        page.goto(auth_app.url)
        assert page.evaluate(CALL_WITH_TOKEN, {"token": key}) == {"asked": 2, "results": ["end", "end"]}
        refused = page.evaluate(CALL_WITH_TOKEN, {"token": ""})
        assert refused["results"] == ["401 missing_credentials"] * 2
    finally:
        auth_app.stop()
