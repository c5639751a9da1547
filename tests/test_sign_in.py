"""The page signs in against a real OpenID Connect provider (node oidc-provider), in real Chromium."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bedrock_relay.api_keys import key_hash
from playwright.sync_api import Page, expect

from tests.browser import CHROMIUM, MISSING_CHROMIUM
from tests.harness import ROOT, AppProcess, free_port, start_app, stop_process

PROVIDER = ROOT / "standin" / "oidc"
if not Path(CHROMIUM).exists():
    pytest.skip(MISSING_CHROMIUM, allow_module_level=True)
if not (PROVIDER / "node_modules" / "oidc-provider").exists() or not shutil.which("node"):
    pytest.skip(
        "node and standin/oidc/node_modules are needed: ./scripts/test installs them", allow_module_level=True
    )

STATUS = "#status"


@pytest.fixture(scope="module")
def signed_app(standin) -> Iterator[tuple[AppProcess, str]]:
    """The relay in jwt mode, and the provider it trusts, each on its own loopback port."""
    app_port, provider_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{provider_port}"
    provider = subprocess.Popen(
        ["node", "provider.mjs", str(provider_port), f"http://127.0.0.1:{app_port}/"],
        cwd=PROVIDER,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert provider.stdout.readline().strip() == "ready"
        app = start_app(
            standin.url,
            port=app_port,
            AUTH_MODE="jwt",
            JWT_ISSUER=issuer,
            JWT_AUDIENCE="relay-page",
            BEDROCK_MAX_ATTEMPTS="1",
        )
        yield app, issuer
        app.stop()
    finally:
        stop_process(provider)


def sign_in(page: Page, app: AppProcess, issuer: str, login: str) -> None:
    page.goto(app.url)
    expect(page.locator(STATUS)).to_have_text("Sign in to chat.")
    page.click("#sign-in")
    # The provider's own pages: its development login, then its consent.
    page.wait_for_url(f"{issuer}/**")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.click("button[type=submit]")
    page.wait_for_url(f"{app.url}/")
    expect(page.locator("#who")).to_have_text(f"Signed in: {login}@example.test")


def test_sign_in_then_chat_as_that_user_with_tokens_only_in_session_storage(page, signed_app):
    app, issuer = signed_app
    token_requests = []
    page.on(
        "request",
        lambda request: (
            request.url.startswith(issuer)
            and request.method == "POST"
            and token_requests.append(request.post_data or "")
        ),
    )
    sign_in(page, app, issuer, "alice")
    assert "code=" not in page.url, "the code stays out of the address bar and history"
    page.fill("#prompt", "hi [standin tokens=4]")
    page.press("#prompt", "Enter")
    expect(page.locator(STATUS)).to_have_text("Answer complete: end_turn, 4 tokens.")
    streamed = [r for r in app.log_records() if r.get("outcome") == "complete"]
    assert streamed and streamed[-1]["principal"] == "alice" and streamed[-1]["authMethod"] == "jwt"
    # The id token lives 30 s here, under the page's 60 s margin: each send refreshes it first,
    # the second with the refresh token kept from sign-in (a refresh, as Cognito's, sends none).
    page.fill("#prompt", "again [standin tokens=2]")
    page.press("#prompt", "Enter")
    expect(page.locator(STATUS)).to_have_text("Answer complete: end_turn, 2 tokens.")
    assert sum("grant_type=refresh_token" in body for body in token_requests) == 2
    assert page.evaluate("localStorage.length") == 0
    # The tokens, and the conversation kept for a reload of this tab (chat.js); nothing else.
    assert sorted(page.evaluate("Object.keys(sessionStorage)")) == ["bedrock-relay-chat", "relay.tokens"]


def test_a_stale_return_from_the_issuer_is_reported_and_sign_in_offered_again(page, signed_app):
    app, _ = signed_app
    page.goto(f"{app.url}/?code=stale&state=forged")
    expect(page.locator(STATUS)).to_have_text("sign-in failed: the state does not match")
    expect(page.locator("#sign-in")).to_be_visible()
    assert "code=" not in page.url


def test_without_signing_in_the_service_refuses_and_the_page_says_so(page, signed_app):
    app, _ = signed_app
    page.goto(app.url)
    expect(page.locator(STATUS)).to_have_text("Sign in to chat.")
    page.fill("#prompt", "hi")
    page.press("#prompt", "Enter")
    expect(page.locator(".turn:last-child .message")).to_contain_text("missing_credentials (HTTP 401)")


def test_sign_out_forgets_the_tokens_and_ends_the_provider_session(page, signed_app):
    app, issuer = signed_app
    sign_in(page, app, issuer, "bob")
    page.click("#sign-out")
    page.wait_for_url(f"{issuer}/**")
    page.click("button[autofocus]")  # the provider asks before it ends its session
    page.wait_for_url(f"{app.url}/**")
    expect(page.locator("#sign-in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_an_api_key_pasted_into_the_page_is_used_for_this_tab_only(page, standin):
    key = "brk_page-test-key"
    app = start_app(standin.url, AUTH_MODE="api_key", API_KEY_HASHES=f"tab:{key_hash(key)}")
    try:
        page.goto(app.url)
        expect(page.locator("#sign-in")).to_be_hidden()
        page.fill("#api-key", key)
        page.click("#api-key-form button")
        expect(page.locator("#who")).to_have_text("Signed in: API key")
        page.fill("#prompt", "hi [standin tokens=3]")
        page.press("#prompt", "Enter")
        expect(page.locator(STATUS)).to_have_text("Answer complete: end_turn, 3 tokens.")
        assert page.evaluate("localStorage.length") == 0
        page.click("#sign-out")
        expect(page.locator("#api-key-form")).to_be_visible()
        # The key, and the conversation with it: the next person at this browser sees neither.
        assert page.evaluate("sessionStorage.length") == 0
        expect(page.locator(".turn")).to_have_count(0)
    finally:
        app.stop()
