"""The chat page in real headless Chromium, against the app and the Bedrock stand-in."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import CHROMIUM, MISSING_CHROMIUM, ChunkCuttingProxy, SecondOrigin
from tests.conftest import store_env, wait_for_record
from tests.harness import ROOT, start_app
from tests.media import b64, pdf, png

if not Path(CHROMIUM).exists():
    pytest.skip(MISSING_CHROMIUM, allow_module_level=True)

from playwright.sync_api import Page, expect

SCREENSHOT = ROOT / "docs" / "screenshot.png"
ANSWER = ".turn:last-child .answer"
ERROR = ".turn:last-child .message"
STATS = ".turn:last-child .stats"

# Records, for each chunk the page's reader gets, whether it is valid UTF-8 on its own.
RECORD_CHUNKS = """
window.__chunks = [];
const read = ReadableStreamDefaultReader.prototype.read;
ReadableStreamDefaultReader.prototype.read = async function () {
  const result = await read.call(this);
  if (result.value instanceof Uint8Array) {
    let whole = true;
    try { new TextDecoder("utf-8", { fatal: true }).decode(result.value); } catch { whole = false; }
    window.__chunks.push(whole);
  }
  return result;
};
"""


def tag() -> str:
    return uuid.uuid4().hex[:12]


def ask(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def answer_text(page: Page) -> str:
    """The answer as rendered text: Markdown's paragraphs end in a newline the model did not send."""
    return (page.locator(ANSWER).text_content() or "").strip()


def shown_stats(page: Page) -> dict[str, str]:
    """Return the last answer's statistics, name to value."""
    return page.evaluate(
        f"""Object.fromEntries([...document.querySelectorAll('{STATS} div')]
          .map((item) => [item.querySelector('dt').textContent, item.querySelector('dd').textContent]))"""
    )


def record_for(standin, label: str):
    return next(r for r in standin.records if r.scenario["id"] == label)


def test_the_answer_grows_in_the_page_while_the_stand_in_is_still_generating(page, app, standin):
    label = tag()
    page.goto(app.url)
    ask(page, f"[standin id={label} tokens=40 tps=10]")
    page.wait_for_function(f"document.querySelector('{ANSWER}')?.textContent.length > 0")
    early = answer_text(page)
    early_stats = shown_stats(page)
    record = record_for(standin, label)
    early_outcome, early_sent = record.outcome, record.tokens_sent
    expect(page.locator("#status")).to_have_text("Answer complete: end_turn, 40 tokens.")
    final = answer_text(page)
    assert early_outcome == "streaming", "the first words appeared only after the stand-in finished"
    assert early_sent < 40
    assert final.startswith(early)
    assert len(final.split()) == 40 > len(early.split())
    # While streaming the page counts events, which may hold several tokens each.
    assert "Chunks" in early_stats and "Tokens" not in early_stats
    stats = shown_stats(page)
    assert stats["Stop reason"] == "end_turn"
    assert stats["Usage"].endswith(" in, 40 out")
    assert stats["Time to first token"].endswith(" ms")
    assert float(stats["Tokens/s"]) > 0
    expect(page.locator(".turn:last-child .assistant")).to_have_attribute("aria-busy", "false")


def test_a_second_turn_sends_the_whole_conversation_and_shows_reasoning(page, app, standin):
    sent = []
    page.on("request", lambda request: request.method == "POST" and sent.append(request.post_data_json))
    page.goto(app.url)
    first_prompt = "What does streaming change? [standin tokens=30 tps=60]"
    ask(page, first_prompt)
    expect(page.locator("#status")).to_have_text("Answer complete: end_turn, 30 tokens.")
    first_answer = answer_text(page)
    label = tag()
    # Shift+Enter adds a line instead of sending.
    second_prompt = f"And how do you think it through?\n[standin id={label} reasoning=12 tokens=150 tps=12]"
    first_line, second_line = second_prompt.split("\n")
    page.fill("#prompt", first_line)
    page.press("#prompt", "Shift+Enter")
    page.type("#prompt", second_line)
    assert len(sent) == 1
    page.press("#prompt", "Enter")
    page.wait_for_function(f"document.querySelector('{ANSWER}')?.textContent.split(' ').length > 25")
    expect(page.locator(".turn:last-child .reasoning-text")).to_contain_text("First I consider")
    assert record_for(standin, label).outcome == "streaming"
    assert sent[1]["messages"] == [
        {"role": "user", "content": first_prompt},
        {"role": "assistant", "content": first_answer},
        {"role": "user", "content": second_prompt},
    ]
    # Reasoning is shown apart from the answer, never inside it.
    assert "First I consider" not in answer_text(page)
    page.click("#stop")


def test_stop_ends_the_request_and_the_stand_in_sees_its_connection_closed(page, app, standin):
    label = tag()
    page.goto(app.url)
    ask(page, f"[standin id={label} tokens=400 tps=20]")
    expect(page.locator("#stop")).to_be_enabled()
    page.wait_for_function(f"document.querySelector('{ANSWER}')?.textContent.length > 0")
    page.click("#stop")
    record = wait_for_record(standin, label, "client_closed")
    assert record.tokens_sent < 400
    expect(page.locator("#status")).to_have_text("Stopped.")
    expect(page.locator(ERROR)).to_contain_text("Stopped before the end")
    expect(page.locator("#stop")).to_be_disabled()
    expect(page.locator("#send")).to_be_enabled()
    assert answer_text(page)


def test_an_error_before_the_stream_is_shown_with_its_status_and_the_prompt_kept(page, app):
    page.goto(app.url)
    prompt = "[standin error=ThrottlingException]"
    ask(page, prompt)
    error = page.locator(ERROR)
    expect(error).to_be_visible()
    expect(error).to_contain_text("ThrottlingException (HTTP 429)")
    expect(error).to_contain_text("stand-in acted out ThrottlingException")
    expect(error).to_contain_text("Retry after 2 s.")
    expect(page.locator("#prompt")).to_have_value(prompt)
    assert answer_text(page) == ""


def test_an_error_inside_the_stream_is_shown_after_the_partial_answer_and_announced_once(page, app):
    page.goto(app.url)
    ask(page, "[standin tokens=10 stream_error=modelStreamErrorException after=3]")
    error = page.locator(ERROR)
    expect(error).to_contain_text("modelStreamErrorException")
    # The status line alone announces: the conversation log and the message stay quiet.
    expect(page.locator("#status")).to_have_text(error.text_content())
    expect(page.locator("#conversation")).to_have_attribute("role", "log")
    expect(page.locator("#conversation")).to_have_attribute("aria-live", "off")
    assert error.get_attribute("role") is None
    assert len(answer_text(page).split()) == 3


def test_a_deadline_stop_without_usage_is_shown_as_complete(page, standin):
    short_app = start_app(standin.url, MAX_STREAM_SECONDS="1")
    try:
        page.goto(short_app.url)
        ask(page, "[standin tokens=200 tps=20]")
        expect(page.locator("#status")).to_have_text("Answer complete: deadline.", timeout=10_000)
        stats = shown_stats(page)
        assert stats["Stop reason"] == "deadline"
        assert stats["Usage"] == "not reported"
        expect(page.locator(ERROR)).to_be_hidden()
        assert answer_text(page)
    finally:
        short_app.stop()


def test_new_chat_during_a_stream_leaves_the_new_conversation_alone(page, app):
    sent = []
    page.on("request", lambda request: request.method == "POST" and sent.append(request.post_data_json))
    page.goto(app.url)
    ask(page, "[standin tokens=400 tps=20]")
    page.wait_for_function(f"document.querySelector('{ANSWER}')?.textContent.length > 0")
    page.click("#new-chat")
    fresh = "[standin tokens=5 tps=0]"
    # Send is enabled again once the stopped request has settled.
    expect(page.locator("#send")).to_be_enabled()
    ask(page, fresh)
    expect(page.locator("#status")).to_have_text("Answer complete: end_turn, 5 tokens.")
    assert sent[-1]["messages"] == [{"role": "user", "content": fresh}]
    expect(page.locator(".turn")).to_have_count(1)


def test_an_unanswered_turn_is_marked_and_the_prompt_refilled_only_if_empty(page, app):
    held = []
    page.route("**/chat", lambda route: held.append(route))
    page.goto(app.url)
    ask(page, "first try")
    for _ in range(750):  # 15 s at most
        if held:
            break
        page.wait_for_timeout(20)
    assert held, "the page never sent its request"
    page.fill("#prompt", "typed meanwhile")
    error = {"error": {"code": "ThrottlingException", "message": "slow down"}}
    held[0].fulfill(
        status=429, headers={"Retry-After": "3"}, content_type="application/json", body=json.dumps(error)
    )
    expect(page.locator(ERROR)).to_contain_text("ThrottlingException (HTTP 429): slow down. Retry after 3 s.")
    expect(page.locator("#prompt")).to_have_value("typed meanwhile")
    expect(page.locator(".turn.unsent .user-text")).to_have_text("first try")
    page.unroute("**/chat")
    sent = []
    page.on("request", lambda request: request.method == "POST" and sent.append(request.post_data_json))
    ask(page, "[standin tokens=3 tps=0]")
    expect(page.locator("#status")).to_have_text("Answer complete: end_turn, 3 tokens.")
    assert sent[-1]["messages"] == [{"role": "user", "content": "[standin tokens=3 tps=0]"}]
    expect(page.locator(".turn:not(.unsent)")).to_have_count(1)


@pytest.fixture
def cutting_proxy(app) -> Iterator[ChunkCuttingProxy]:
    proxy = ChunkCuttingProxy(int(app.url.rsplit(":", 1)[1]))
    yield proxy
    proxy.stop()


def test_multi_byte_text_split_across_chunks_renders_intact(page, app, cutting_proxy):
    prompt = "[standin text=unicode tokens=30 tps=40]"
    expected = httpx.post(
        f"{app.url}/chat", json={"messages": [{"role": "user", "content": prompt}]}, timeout=30
    ).text
    page.add_init_script(RECORD_CHUNKS)
    page.goto(cutting_proxy.url)
    ask(page, prompt)
    expect(page.locator("#status")).to_have_text("Answer complete: end_turn, 30 tokens.")
    chunks = page.evaluate("window.__chunks")
    assert False in chunks, "no chunk ended inside a character: the test did not split any"
    assert "\ufffd" not in answer_text(page)
    assert answer_text(page) == expected


def test_a_connection_cut_partway_is_reported_as_lost_not_as_unreachable(page, app, cutting_proxy):
    page.goto(cutting_proxy.url)
    ask(page, "[standin tokens=400 tps=20]")
    page.wait_for_function(f"document.querySelector('{ANSWER}')?.textContent.length > 0")
    cutting_proxy.drop_connections()
    error = page.locator(ERROR)
    expect(error).to_contain_text("connection_lost")
    expect(error).to_contain_text("retryable")
    expect(page.locator("#send")).to_be_enabled()


@pytest.fixture
def second_origin() -> Iterator[SecondOrigin]:
    site = SecondOrigin()
    yield site
    site.stop()


def test_a_page_on_another_origin_streams_when_cors_allows_it(page, standin, second_origin):
    cors_app = start_app(standin.url, CORS_ALLOW_ORIGINS=second_origin.url)
    try:
        second_origin.serve_page_for(f"{cors_app.url}/chat")
        page.goto(second_origin.url)
        ask(page, "[standin tokens=12 tps=0]")
        expect(page.locator("#status")).to_have_text("Answer complete: end_turn, 12 tokens.")
        assert len(answer_text(page).split()) == 12
        request_id = page.evaluate(
            """async (url) => {
              const response = await fetch(url, {method: "POST",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({prompt: "[standin tokens=2 tps=0]"})});
              await response.text();
              return response.headers.get("X-Request-Id");
            }""",
            f"{cors_app.url}/chat",
        )
        assert request_id, "X-Request-Id is not exposed to the other origin"
    finally:
        cors_app.stop()


def test_a_page_on_another_origin_is_refused_without_the_cors_setting(page, app, standin, second_origin):
    label = tag()
    second_origin.serve_page_for(f"{app.url}/chat")
    page.goto(second_origin.url)
    ask(page, f"[standin id={label}]")
    expect(page.locator(ERROR)).to_contain_text("network_error")
    expect(page.locator("#status")).to_contain_text("refused this page's origin")
    assert answer_text(page) == ""
    # The browser's preflight was refused, so the chat request never reached Bedrock.
    assert not [r for r in standin.records if r.scenario["id"] == label]


@pytest.fixture(scope="module")
def store_app(standin, dynamodb):
    """The app with the stream store on, as deployed by default."""
    process = start_app(standin.url, **store_env(dynamodb), BEDROCK_MAX_ATTEMPTS="1")
    yield process
    process.stop()


def stream_ids(page: Page) -> list[str]:
    """Collect the X-Stream-Id of every /chat answer the page gets."""
    found: list[str] = []
    page.on("response", lambda response: found.append(response.headers.get("x-stream-id") or ""))
    return found


def test_with_the_store_a_dropped_connection_resumes_the_same_answer_in_place(page, store_app, standin):
    proxy = ChunkCuttingProxy(int(store_app.url.rsplit(":", 1)[1]), pause=0)
    try:
        label = tag()
        ids = stream_ids(page)
        page.goto(proxy.url)
        ask(page, f"[standin id={label} tokens=80 tps=20]")
        page.wait_for_function(f"document.querySelector('{ANSWER}')?.textContent.length > 0")
        proxy.drop_connections()
        expect(page.locator(ERROR)).to_contain_text("reconnecting")
        expect(page.locator("#status")).to_have_text("Answer complete: end_turn, 80 tokens.", timeout=30_000)
        # Shown plainly: the answer was interrupted, and resumed whole.
        expect(page.locator(ERROR)).to_have_text("The connection dropped and was resumed: nothing was lost.")
        # Exactly the stored answer: nothing lost at the drop, nothing doubled by the resume.
        stream_id = next(value for value in ids if value)
        stored = httpx.get(f"{store_app.url}/chat/{stream_id}", headers={"Accept": "text/plain"}, timeout=30)
        assert answer_text(page) == stored.text
        # Bedrock never saw a disconnect: the drop did not stop the answer.
        assert record_for(standin, label).outcome == "complete"
    finally:
        proxy.stop()


def test_with_the_store_stop_reaches_bedrock_through_the_cancel(page, store_app, standin):
    label = tag()
    page.goto(store_app.url)
    ask(page, f"[standin id={label} tokens=400 tps=20]")
    page.wait_for_function(f"document.querySelector('{ANSWER}')?.textContent.length > 0")
    page.click("#stop")
    # With the store on, a closed connection alone no longer stops Bedrock: the cancel did.
    record = wait_for_record(standin, label, "client_closed")
    assert record.tokens_sent < 400
    expect(page.locator("#status")).to_have_text("Stopped.")
    assert store_app.wait_for_log(lambda r: r.get("outcome") == "cancelled")["stopReason"] == "cancelled"


def test_with_the_store_closing_the_page_mid_answer_stops_it(page, store_app, standin):
    label = tag()
    page.goto(store_app.url)
    ask(page, f"[standin id={label} tokens=400 tps=20]")
    page.wait_for_function(f"document.querySelector('{ANSWER}')?.textContent.length > 0")
    page.goto("about:blank")
    record = wait_for_record(standin, label, "client_closed")
    assert record.tokens_sent < 400


def test_a_guardrail_block_is_shown_as_its_own_notice(page, standin):
    app = start_app(standin.url, GUARDRAIL_ID="gr-page", GUARDRAIL_TRACE="true", BEDROCK_MAX_ATTEMPTS="1")
    try:
        page.goto(app.url)
        ask(page, "[standin tokens=20 tps=40 guardrail=output after=4]")
        notice = page.locator(ERROR)
        expect(notice).to_have_text("Blocked by a guardrail on the output (contentPolicy).")
        expect(notice).to_have_class("message notice guardrail")
        assert answer_text(page)  # what came before the block stays
        expect(page.locator("#send")).to_be_enabled()
    finally:
        app.stop()


# Gives the page files as a drop on the page and as a paste into the message, the way a browser does.
GIVE_FILES = """([how, files]) => {
  const transfer = new DataTransfer();
  for (const [name, type, base64] of files) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, { type }));
  }
  const target = document.getElementById("prompt");
  if (how === "drop") {
    target.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  } else {
    const options = { clipboardData: transfer, bubbles: true, cancelable: true };
    target.dispatchEvent(new ClipboardEvent("paste", options));
  }
}"""


def test_images_and_a_pdf_picked_dropped_and_pasted_are_shown_and_sent(page, app, standin, tmp_path):
    picked, dropped, pasted, paper = png(3, 3), png(4, 2), png(2, 5), pdf("terms")
    (tmp_path / "picked.png").write_bytes(picked)
    page.goto(app.url)
    page.set_input_files("#file-input", str(tmp_path / "picked.png"))
    page.evaluate(GIVE_FILES, ["drop", [["dropped.png", "image/png", b64(dropped)]]])
    page.evaluate(
        GIVE_FILES,
        [
            "paste",
            [["pasted.png", "image/png", b64(pasted)], ["Q3 terms.pdf", "application/pdf", b64(paper)]],
        ],
    )
    expect(page.locator("#attachments .attachment")).to_have_count(4)
    # A file Bedrock cannot take is refused by name, and the others stay.
    page.evaluate(GIVE_FILES, ["drop", [["notes.exe", "application/octet-stream", "AAAA"]]])
    expect(page.locator("#status")).to_contain_text("notes.exe was not attached")
    page.click("#attachments .attachment:nth-child(2) .remove")  # the dropped one, taken back
    label = tag()
    ask(page, f"[standin tokens=3 id={label}] what are these?")
    expect(page.locator(".turn:last-child .user .attachment img")).to_have_count(2)
    expect(page.locator(".turn:last-child .user .document-chip")).to_have_text("PDF · Q3 terms.pdf")
    expect(page.locator("#attachments")).to_be_hidden()
    received = wait_for_record(standin, label, "complete").attachments
    assert [(a["kind"], a["format"], a["name"], a["sha256"]) for a in received] == [
        ("image", "png", None, hashlib.sha256(picked).hexdigest()),
        ("image", "png", None, hashlib.sha256(pasted).hexdigest()),
        ("document", "pdf", "Q3 terms", hashlib.sha256(paper).hexdigest()),
    ]
    # The next turn sends the earlier files again: the model sees the whole conversation.
    expect(page.locator("#send")).to_be_enabled()
    # A second file of the same name gets a name of its own: Bedrock takes each name once a request.
    page.evaluate(GIVE_FILES, ["paste", [["Q3 terms.pdf", "application/pdf", b64(pdf("more"))]]])
    follow = tag()
    ask(page, f"[standin tokens=2 id={follow}] and the first?")
    names = [a["name"] for a in wait_for_record(standin, follow, "complete").attachments]
    assert names == [None, None, "Q3 terms", "Q3 terms (2)"]


def test_redacted_reasoning_is_shown_as_withheld(page, app):
    page.goto(app.url)
    ask(page, "[standin tokens=3 reasoning=2 redacted=1] think")
    note = page.locator(".turn:last-child .redacted")
    expect(note).to_have_text("1 block of reasoning redacted by the model's provider (encrypted, not shown).")
    expect(page.locator(".turn:last-child .reasoning-text")).not_to_be_empty()
