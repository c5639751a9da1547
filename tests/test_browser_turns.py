"""The chat page's turns in real Chromium: retry, edit, a reload that keeps the conversation, the
model picker, and a screen reader's throttled view of the growing answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, MISSING_CHROMIUM
from tests.harness import AppProcess, start_app
from tests.test_browser import answer_text, ask

if not Path(CHROMIUM).exists():
    pytest.skip(MISSING_CHROMIUM, allow_module_level=True)

from playwright.sync_api import Page, expect

DONE = "Answer complete"
MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # the default, the only one allowed


def posts(page: Page) -> list[dict]:
    """Collect the body of every POST /chat the page sends from now on."""
    sent: list[dict] = []
    page.on(
        "request", lambda r: r.method == "POST" and r.url.endswith("/chat") and sent.append(r.post_data_json)
    )
    return sent


def converse(page: Page, *prompts: str) -> None:
    for text in prompts:
        ask(page, text)
        expect(page.locator("#status")).to_contain_text(DONE)


def test_retry_asks_the_last_question_again_without_its_old_answer(page: Page, app):
    page.goto(app.url)
    converse(page, "first [standin tokens=4 tps=0]", "second [standin tokens=6 tps=0]")
    first_answer = page.locator(".turn").first.locator(".answer").text_content().strip()
    sent = posts(page)
    # Only the last answer offers Retry.
    expect(page.locator(".retry:visible")).to_have_count(1)
    page.locator(".turn:last-child .retry").click()
    expect(page.locator("#status")).to_contain_text(DONE)
    assert sent[-1]["messages"] == [
        {"role": "user", "content": "first [standin tokens=4 tps=0]"},
        {"role": "assistant", "content": first_answer},
        {"role": "user", "content": "second [standin tokens=6 tps=0]"},
    ]
    expect(page.locator(".turn")).to_have_count(2)
    assert len(answer_text(page).split()) == 6


def test_editing_an_earlier_message_branches_from_it(page: Page, app):
    page.goto(app.url)
    converse(
        page, "one [standin tokens=3 tps=0]", "two [standin tokens=3 tps=0]", "three [standin tokens=3 tps=0]"
    )
    sent = posts(page)
    page.locator(".turn").nth(1).locator(".edit").click()
    expect(page.locator("#prompt")).to_have_value("two [standin tokens=3 tps=0]")
    expect(page.locator(".turn").nth(1)).to_have_class("turn editing")
    # Escape leaves the conversation as it was.
    page.press("#prompt", "Escape")
    expect(page.locator(".editing")).to_have_count(0)
    page.locator(".turn").nth(1).locator(".edit").click()
    page.fill("#prompt", "two, said better [standin tokens=5 tps=0]")
    page.press("#prompt", "Enter")
    expect(page.locator("#status")).to_contain_text(DONE)
    messages = sent[-1]["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "one [standin tokens=3 tps=0]",
        "two, said better [standin tokens=5 tps=0]",
    ]
    assert len(messages) == 3
    # The third exchange, which followed the edited message, is gone.
    expect(page.locator(".turn")).to_have_count(2)
    expect(page.locator(".turn:last-child .user-text")).to_have_text(
        "two, said better [standin tokens=5 tps=0]"
    )


def test_a_reload_keeps_the_conversation_rendered_and_goes_on_with_it(page: Page, app):
    page.goto(app.url)
    converse(page, "[standin text=echo tps=0]\nSome **bold** words.", "again [standin tokens=4 tps=0]")
    page.reload()
    expect(page.locator(".turn")).to_have_count(2)
    expect(page.locator(".turn").first.locator(".answer strong")).to_have_text("bold")
    assert page.locator(".turn").first.locator(".assistant").get_attribute("aria-busy") == "false"
    sent = posts(page)
    converse(page, "and on [standin tokens=2 tps=0]")
    assert [m["role"] for m in sent[-1]["messages"]] == ["user", "assistant"] * 2 + ["user"]
    assert sent[-1]["messages"][1]["content"] == "Some **bold** words."
    # New chat forgets it, reload or not.
    page.click("#new-chat")
    page.reload()
    expect(page.locator(".turn")).to_have_count(0)


@pytest.fixture(scope="module")
def two_models(standin) -> Iterator[AppProcess]:
    app = start_app(standin.url, ALLOWED_MODEL_IDS="model-a,model-b", MODEL_ID="model-a")
    yield app
    app.stop()


def test_the_model_picker_offers_the_allowed_models_and_keeps_the_choice(page: Page, two_models, standin):
    page.goto(two_models.url)
    picker = page.locator("#model")
    expect(picker).to_be_visible()
    assert picker.locator("option").all_text_contents() == ["model-a", "model-b"]
    expect(picker).to_have_value("model-a")
    picker.select_option("model-b")
    sent = posts(page)
    converse(page, "which model? [standin tokens=2 tps=0]")
    assert sent[-1]["modelId"] == "model-b"
    assert standin.records[-1].model_id == "model-b"
    page.reload()
    expect(page.locator("#model")).to_have_value("model-b")


def test_one_model_needs_no_picker(page: Page, app):
    with page.expect_response("**/config") as config:
        page.goto(app.url)
    assert config.value.json()["models"] == {"allowed": [MODEL], "default": MODEL}
    page.wait_for_load_state("networkidle")
    expect(page.locator("#model-picker")).to_be_hidden()


def test_a_screen_reader_hears_the_answer_a_few_seconds_at_a_time(page: Page, app):
    page.goto(app.url)
    page.evaluate(
        """window.__announced = [];
        const region = document.querySelector('#live-answer');
        new MutationObserver(() => window.__announced.push(region.textContent))
          .observe(region, { childList: true, characterData: true, subtree: true });"""
    )
    ask(page, "[standin tokens=140 tps=20 ttft=0]")  # 7 seconds of tokens
    expect(page.locator("#status")).to_contain_text(DONE, timeout=30_000)
    announced = page.evaluate("window.__announced")
    # Every 3 s and at the end: a handful of announcements, not one per token.
    assert 2 <= len(announced) <= 5, announced
    # Together they are the whole answer, each part once.
    assert " ".join(part.strip() for part in announced).split() == answer_text(page).split()


def test_every_button_has_a_name(page: Page, app):
    page.goto(app.url)
    converse(page, "[standin tokens=3 tps=0]")
    unnamed = page.evaluate(
        """[...document.querySelectorAll('button')]
          .filter((b) => !b.hidden && !(b.getAttribute('aria-label') || b.textContent.trim()))
          .map((b) => b.outerHTML)"""
    )
    assert unnamed == []
