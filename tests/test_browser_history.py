"""The chat page's history sidebar in real Chromium, against the app and moto's DynamoDB: list,
open, delete and start conversations, with retry, edit and reload keeping the service's copy right."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.browser import CHROMIUM, MISSING_CHROMIUM
from tests.conftest import caller_keys, store_env
from tests.harness import AppProcess, start_app
from tests.media import png
from tests.test_browser import answer_text, ask
from tests.test_browser_turns import DONE, converse, posts

if not Path(CHROMIUM).exists():
    pytest.skip(MISSING_CHROMIUM, allow_module_level=True)

from playwright.sync_api import Page, expect

ITEMS = "#history li"


@pytest.fixture(scope="module")
def kept(standin, dynamodb) -> Iterator[tuple[AppProcess, dict[str, str]]]:
    """An app with the store and API-key sign-in, so it keeps and lists conversations; and a key."""
    hashes, headers = caller_keys("reader")
    app = start_app(
        standin.url,
        **store_env(dynamodb),
        AUTH_MODE="api_key",
        API_KEY_HASHES=hashes,
        ALLOWED_MODEL_IDS="model-a,model-b",
        MODEL_ID="model-a",
    )
    yield app, headers["reader"]
    app.stop()


def fresh_app(standin, dynamodb) -> tuple[AppProcess, dict[str, str]]:
    hashes, headers = caller_keys("reader")
    app = start_app(standin.url, **store_env(dynamodb), AUTH_MODE="api_key", API_KEY_HASHES=hashes)
    return app, headers["reader"]


def open_signed_in(page: Page, app: AppProcess, key: dict[str, str]) -> None:
    """Open the page and sign in with the key: the sidebar shows."""
    page.goto(app.url)
    sign_in(page, key)


def sign_in(page: Page, key: dict[str, str]) -> None:
    page.fill("#api-key", key["X-Api-Key"])
    page.click("#api-key-form button")
    expect(page.locator("#history")).to_be_visible()


def stored(app: AppProcess, key: dict, conversation_id: str) -> httpx.Response:
    return httpx.get(f"{app.url}/conversations/{conversation_id}", headers=key, timeout=10)


def stored_turns(app: AppProcess, key: dict, conversation_id: str) -> list[tuple[str, str]]:
    response = stored(app, key, conversation_id)
    assert response.status_code == 200, response.text
    return [(turn["role"], turn["content"]) for turn in response.json()["turns"]]


@pytest.fixture
def app_and_key(standin, dynamodb) -> Iterator[tuple[AppProcess, dict[str, str]]]:
    """Each test its own caller, so each starts with an empty history."""
    app, key = fresh_app(standin, dynamodb)
    yield app, key
    app.stop()


def test_the_sidebar_lists_opens_and_deletes_conversations(page: Page, kept, dynamodb):
    app, key = kept
    page.goto(app.url)
    expect(page.locator("#history")).to_be_hidden()  # signed out: there is no one to list for
    sign_in(page, key)
    sent = posts(page)
    picker = page.locator("#model")

    converse(page, "apples [standin tokens=3 tps=0]")
    first_answer = answer_text(page)
    assert sent[-1]["store"] is True and "conversationId" not in sent[-1]
    expect(page.locator(ITEMS)).to_have_count(1)
    expect(page.locator(f"{ITEMS} .open[aria-current]")).to_have_text("apples [standin tokens=3 tps=0]")

    page.click("#new-chat")
    expect(page.locator(f"{ITEMS} .open[aria-current]")).to_have_count(0)
    picker.select_option("model-b")
    converse(page, "pears [standin tokens=4 tps=0]", "and plums? [standin tokens=2 tps=0]")
    pears_id = sent[-1]["conversationId"]
    assert sent[-1]["modelId"] == "model-b" and "store" not in sent[-1]
    # The newest first.
    expect(page.locator(f"{ITEMS} .open")).to_have_text(
        ["pears [standin tokens=4 tps=0]", "apples [standin tokens=3 tps=0]"]
    )

    # Opening the first shows its turns, with the model its answer used, and goes on with it.
    page.locator(f"{ITEMS} .open", has_text="apples").click()
    expect(page.locator(".turn")).to_have_count(1)
    expect(page.locator(".turn .answer")).to_have_text(first_answer)
    expect(picker).to_have_value("model-a")
    converse(page, "more apples [standin tokens=2 tps=0]")
    apples_id = sent[-1]["conversationId"]
    assert apples_id != pears_id and sent[-1]["modelId"] == "model-a"
    assert sent[-1]["messages"][:2] == [
        {"role": "user", "content": "apples [standin tokens=3 tps=0]"},
        {"role": "assistant", "content": first_answer},
    ]
    assert [role for role, _ in stored_turns(app, key, apples_id)] == ["user", "assistant"] * 2
    expect(page.locator(f"{ITEMS} .open").first).to_have_text("apples [standin tokens=3 tps=0]")

    page.locator(f"{ITEMS} .open", has_text="pears").click()
    expect(page.locator(".turn")).to_have_count(2)
    expect(picker).to_have_value("model-b")

    # Deleting one that is not open leaves the page as it is; deleting the open one starts anew.
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(ITEMS, has_text="apples").locator(".delete").click()
    expect(page.locator(ITEMS)).to_have_count(1)
    assert stored(app, key, apples_id).status_code == 404
    expect(page.locator(".turn")).to_have_count(2)
    page.get_by_role("button", name="Delete the conversation “pears [standin tokens=4 tps=0]”").click()
    expect(page.locator(ITEMS)).to_have_count(0)
    expect(page.locator(".turn")).to_have_count(0)
    assert stored(app, key, pears_id).status_code == 404
    expect(page.locator("#history .history-note")).to_contain_text("will show here")


def test_retry_and_edit_keep_the_services_copy_in_step(page: Page, app_and_key):
    app, key = app_and_key
    open_signed_in(page, app, key)
    sent = posts(page)
    converse(page, "one [standin tokens=3 tps=0]", "two [standin tokens=5 tps=0]")
    conversation_id = sent[-1]["conversationId"]

    page.locator(".turn:last-child .retry").click()
    expect(page.locator("#status")).to_contain_text(DONE)
    assert sent[-1]["conversationId"] == conversation_id and len(sent[-1]["messages"]) == 3
    shown = [page.locator(".turn .answer").nth(i).text_content().strip() for i in range(2)]
    assert [text for _, text in stored_turns(app, key, conversation_id)] == [
        "one [standin tokens=3 tps=0]",
        shown[0],
        "two [standin tokens=5 tps=0]",
        shown[1],
    ]

    page.locator(".turn").first.locator(".edit").click()
    page.fill("#prompt", "uno [standin tokens=2 tps=0]")
    page.press("#prompt", "Enter")
    expect(page.locator("#status")).to_contain_text(DONE)
    assert sent[-1]["conversationId"] == conversation_id
    assert sent[-1]["messages"] == [{"role": "user", "content": "uno [standin tokens=2 tps=0]"}]
    assert stored_turns(app, key, conversation_id) == [
        ("user", "uno [standin tokens=2 tps=0]"),
        ("assistant", answer_text(page)),
    ]
    expect(page.locator(f"{ITEMS} .open")).to_have_count(1)


def test_a_reload_keeps_the_open_conversation_and_its_id(page: Page, app_and_key):
    app, key = app_and_key
    open_signed_in(page, app, key)
    sent = posts(page)
    converse(page, "remember me [standin tokens=3 tps=0]")
    conversation_id = sent[-1].get("conversationId")
    page.reload()
    expect(page.locator(".turn")).to_have_count(1)
    expect(page.locator(f"{ITEMS} .open[aria-current]")).to_have_text("remember me [standin tokens=3 tps=0]")
    sent = posts(page)
    converse(page, "still there? [standin tokens=2 tps=0]")
    assert conversation_id is None  # the first send asked for a new one; `start` brought its id
    listed = httpx.get(f"{app.url}/conversations", headers=key, timeout=10).json()["conversations"]
    assert sent[-1]["conversationId"] == listed[0]["conversationId"] and listed[0]["turns"] == 4


def test_on_a_phone_the_list_is_a_panel_closed_once_a_conversation_opens(page: Page, app_and_key):
    app, key = app_and_key
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(app.url)
    page.fill("#api-key", key["X-Api-Key"])
    page.click("#api-key-form button")
    converse(page, "small screen [standin tokens=2 tps=0]")
    page.click("#new-chat")
    toggle = page.locator("#history-toggle")
    expect(toggle).to_be_visible()
    expect(page.locator("#history")).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator(f"{ITEMS} .open").first).to_be_focused()  # the panel takes focus
    page.locator(f"{ITEMS} .open").first.click()
    expect(page.locator("#history")).to_be_hidden()
    expect(page.locator(".turn")).to_have_count(1)
    toggle.click()
    page.keyboard.press("Escape")
    expect(page.locator("#history")).to_be_hidden()
    expect(toggle).to_be_focused()


def test_signing_out_clears_the_list(page: Page, app_and_key):
    app, key = app_and_key
    open_signed_in(page, app, key)
    converse(page, "private [standin tokens=2 tps=0]")
    expect(page.locator(ITEMS)).to_have_count(1)
    page.click("#sign-out")
    expect(page.locator("#history")).to_be_hidden()
    assert page.locator(ITEMS).count() == 0


def test_a_file_is_kept_by_name_and_shown_so_when_reopened(page: Page, app_and_key):
    app, key = app_and_key
    open_signed_in(page, app, key)
    page.set_input_files("#file-input", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": png()}])
    converse(page, "what is this? [standin tokens=2 tps=0]")
    page.click("#new-chat")
    sent = posts(page)
    page.locator(f"{ITEMS} .open").first.click()
    expect(page.locator(".turn .not-kept")).to_have_text("image (png): not kept")
    converse(page, "and now? [standin tokens=2 tps=0]")
    # The file itself is gone: what goes on is its question, and the kept copy still names it.
    assert sent[-1]["messages"][0] == {"role": "user", "content": "what is this? [standin tokens=2 tps=0]"}
    turns = stored(app, key, sent[-1]["conversationId"]).json()["turns"]
    assert turns[0]["files"] == [{"type": "image", "format": "png"}] and len(turns) == 4


def test_stop_then_retry_waits_for_the_stopped_answer_and_keeps_one_conversation(page: Page, app_and_key):
    app, key = app_and_key
    open_signed_in(page, app, key)
    sent = posts(page)
    ask(page, "long one [standin tokens=400 tps=20]")
    expect(page.locator(".turn .answer")).not_to_be_empty()
    page.click("#stop")
    page.locator(".turn:last-child .retry").click()  # at once: the stopped answer is still being kept
    expect(page.locator("#status")).to_contain_text(DONE, timeout=30_000)
    conversation_id = sent[1]["conversationId"]
    assert sent[0]["store"] is True and all(
        body.get("conversationId") == conversation_id for body in sent[1:]
    )
    expect(page.locator(ITEMS)).to_have_count(1)
    assert stored_turns(app, key, conversation_id) == [
        ("user", "long one [standin tokens=400 tps=20]"),
        ("assistant", answer_text(page)),
    ]


def test_keyboard_focus_stays_in_the_list_after_a_delete(page: Page, app_and_key):
    app, key = app_and_key
    open_signed_in(page, app, key)
    converse(page, "a [standin tokens=2 tps=0]")
    page.click("#new-chat")
    converse(page, "b [standin tokens=2 tps=0]")
    page.on("dialog", lambda dialog: dialog.accept())
    expect(page.locator(ITEMS)).to_have_count(2)
    page.locator(ITEMS).first.locator(".delete").focus()
    page.keyboard.press("Enter")
    expect(page.locator(ITEMS)).to_have_count(1)
    expect(page.locator(f"{ITEMS} .open")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the last one: focus goes back to the message
    expect(page.locator(ITEMS)).to_have_count(0)
    expect(page.locator("#prompt")).to_be_focused()


def test_a_conversation_saved_for_someone_else_is_not_restored(page: Page, app_and_key):
    app, key = app_and_key
    open_signed_in(page, app, key)
    converse(page, "mine [standin tokens=2 tps=0]")
    # As if another user had been signed in when it was saved (their refresh refused, no Sign out).
    page.evaluate(
        """const saved = JSON.parse(sessionStorage.getItem('bedrock-relay-chat'));
        sessionStorage.setItem('bedrock-relay-chat', JSON.stringify({...saved, who: 'someone@else'}))"""
    )
    page.reload()
    expect(page.locator(ITEMS)).to_have_count(1)
    expect(page.locator(".turn")).to_have_count(0)
    assert page.evaluate("sessionStorage.getItem('bedrock-relay-chat')") is None


def test_older_conversations_are_shown_a_page_at_a_time(page: Page, app_and_key):
    app, key = app_and_key

    def made(n: int) -> str:
        body, wanted = {"prompt": f"[standin tokens=1] question {n}"}, {**key, "Accept": "application/json"}
        response = httpx.post(f"{app.url}/chat", json=body, headers=wanted, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["conversationId"]

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(made, range(52)))  # more than the page's 50
    open_signed_in(page, app, key)
    expect(page.locator(ITEMS)).to_have_count(50)
    older = page.get_by_role("button", name="Show older")
    older.click()
    expect(page.locator(ITEMS)).to_have_count(52)
    expect(older).to_be_hidden()
    assert set(page.locator(ITEMS).evaluate_all("items => items.map((item) => item.dataset.id)")) == ids
    # Focus goes to the first conversation the page added, not to the page's body.
    expect(page.locator(ITEMS).nth(50).locator(".open")).to_be_focused()
    # Deleting one of them keeps the older page shown, and focus where it was.
    last = page.locator(ITEMS).nth(51).get_attribute("data-id")
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(ITEMS).nth(50).locator(".delete").click()
    expect(page.locator(ITEMS)).to_have_count(51)
    expect(page.locator(ITEMS).nth(50)).to_have_attribute("data-id", last)
    expect(page.locator(ITEMS).nth(50).locator(".open")).to_be_focused()
    # Going on with an older one moves it to the top, and the older page stays shown.
    page.locator(ITEMS).nth(50).locator(".open").click()
    expect(page.locator("#status")).to_contain_text("Opened")
    converse(page, "and then? [standin tokens=2 tps=0]")
    expect(page.locator(ITEMS).first).to_have_attribute("data-id", last)
    expect(page.locator(ITEMS)).to_have_count(51)
