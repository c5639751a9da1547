"""A Bedrock guardrail on every call: set once, never turned off by a request, reported when it acts."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from standin.server import StandInServer
from tests.conftest import wait_for_record
from tests.harness import AppProcess, start_app

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture(scope="module", params=["sync", "async"])
def guarded(request, standin: StandInServer) -> Iterator[tuple[AppProcess, str]]:
    process = start_app(
        standin.url,
        GUARDRAIL_ID="gr-test",
        GUARDRAIL_VERSION="3",
        GUARDRAIL_STREAM_MODE=request.param,
        GUARDRAIL_TRACE="true",
        BEDROCK_MAX_ATTEMPTS="1",
    )
    yield process, request.param
    process.stop()


def chat(app: AppProcess, prompt: str, accept: str) -> httpx.Response:
    return httpx.post(f"{app.url}/chat", json={"prompt": prompt}, headers={"Accept": accept}, timeout=30)


def test_every_call_carries_the_guardrail(guarded, standin):
    app, mode = guarded
    chat(app, f"[standin tokens=3 id=gr-config-{mode}] hi", "text/plain")
    config = wait_for_record(standin, f"gr-config-{mode}", "complete").guardrail
    assert config == {
        "guardrailIdentifier": "gr-test",
        "guardrailVersion": "3",
        "streamProcessingMode": mode,
        "trace": "enabled",
    }


def test_an_intervention_mid_stream_is_a_guardrail_event_then_the_end(guarded):
    app, mode = guarded
    answer = chat(
        app, f"[standin tokens=20 guardrail=output after=5 id=gr-sse-{mode}] hi", "text/event-stream"
    )
    events = [block.split("\n") for block in answer.text.strip().split("\n\n")]
    names = [next(line[7:] for line in block if line.startswith("event: ")) for block in events]
    assert names == ["start", *["token"] * 5, "guardrail", "end"]
    assert '"source":"output"' in answer.text and '"policies":["contentPolicy"]' in answer.text
    assert '"stopReason":"guardrail_intervened"' in answer.text
    record = app.log_for(answer.headers["x-request-id"])
    assert record["stopReason"] == "guardrail_intervened"
    assert record["guardrail"] == {"source": "output", "policies": ["contentPolicy"]}


def test_plain_text_ends_with_a_clear_line_and_ndjson_with_a_guardrail_line(guarded):
    app, _ = guarded
    text = chat(app, "[standin tokens=20 guardrail=output after=5] hi", "text/plain").text
    assert text.endswith(
        "[error] guardrail_intervened: a guardrail blocked the answer on the output (contentPolicy)\n"
    )
    lines = chat(app, "[standin tokens=20 guardrail=input] hi", "application/x-ndjson").text.splitlines()
    assert '"type":"token"' not in "".join(lines)
    assert '"type":"guardrail"' in lines[-2] and '"source":"input"' in lines[-2]


def test_the_openai_api_reports_content_filter(guarded):
    app, _ = guarded
    client = openai.OpenAI(base_url=f"{app.url}/v1", api_key="local", max_retries=0, timeout=30)
    prompt = [{"role": "user", "content": "[standin tokens=20 guardrail=output after=3] hi"}]
    assert (
        client.chat.completions.create(model=MODEL, messages=prompt).choices[0].finish_reason
        == "content_filter"
    )
