"""The OpenAI-compatible API, driven by the official openai Python SDK against the running service."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from tests.conftest import caller_keys, store_env, wait_for_record
from tests.harness import AppProcess, start_app
from tests.media import b64, png

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
JSON_MODE = {"type": "json_object"}


@pytest.fixture
def client(app: AppProcess) -> openai.OpenAI:
    # With auth off any key is accepted, as for local use; the SDK insists on one.
    return openai.OpenAI(base_url=f"{app.url}/v1", api_key="local", max_retries=0, timeout=30)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_models_lists_the_allowed_ids(client):
    assert [model.id for model in client.models.list()] == [MODEL]


def test_a_streamed_completion_arrives_in_chunks_with_usage(client, standin):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, *ask("[standin tokens=12 id=oa-stream] hi")],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert len({c.id for c in chunks}) == 1 and chunks[0].choices[0].delta.role == "assistant"
    assert len(text.split()) == 12
    assert wait_for_record(standin, "oa-stream", "complete").messages[0][0] == "user"


def test_a_whole_completion_with_usage_and_length(client):
    completion = client.chat.completions.create(
        model=MODEL, messages=ask("[standin tokens=50] long"), max_completion_tokens=5
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert len(choice.message.content.split()) == 5
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 5


def test_stop_reaches_bedrock(client, standin):
    client.chat.completions.create(
        model=MODEL, messages=ask("[standin tokens=3 id=oa-stop] hi"), stop="END", temperature=0.5, top_p=0.9
    )
    inference = wait_for_record(standin, "oa-stop", "complete").inference
    assert inference == {"stopSequences": ["END"], "temperature": 0.5, "topP": 0.9}


def test_reasoning_is_apart_from_the_content(client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=ask("[standin tokens=4 reasoning=3] hi"), stream=True
        )
    )
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks)
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert reasoning and content and reasoning not in content


def test_unicode_split_across_chunks_arrives_whole(client, app):
    prompt = "[standin text=unicode tokens=30]"
    expected = httpx.post(f"{app.url}/chat", json={"prompt": prompt}, timeout=30).text
    chunks = client.chat.completions.create(model=MODEL, messages=ask(prompt), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected


@pytest.mark.parametrize(
    ("scenario", "exception", "status"),
    [
        ("[standin error=ValidationException]", openai.BadRequestError, 400),
        ("[standin error=ResourceNotFoundException]", openai.NotFoundError, 404),
        ("[standin error=ThrottlingException retry_after=7]", openai.RateLimitError, 429),
        ("[standin error=ServiceUnavailableException]", openai.InternalServerError, 503),
        ("[standin error=InternalServerException]", openai.InternalServerError, 502),
    ],
)
def test_each_refusal_raises_the_sdks_exception(client, scenario, exception, status):
    with pytest.raises(exception) as raised:
        client.chat.completions.create(model=MODEL, messages=ask(scenario))
    assert raised.value.status_code == status
    assert raised.value.response.headers["x-request-id"]
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "7"


def test_a_mid_stream_failure_raises_and_never_looks_done(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=ask("[standin tokens=20 stream_error=throttlingException after=5]"), stream=True
    )
    seen = []
    with pytest.raises(openai.APIError, match="throttl"):
        for chunk in stream:
            seen.append(chunk)
    assert seen and all(c.choices[0].finish_reason is None for c in seen if c.choices)


def test_a_truncated_stream_raises(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=ask("[standin tokens=20 truncate=clean after=5]"), stream=True
    )
    with pytest.raises(openai.APIError, match="ended before"):
        list(stream)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "", "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"model": MODEL, "messages": ask("hi"), "n": 2}, "n"),
        ({"model": MODEL, "messages": ask("hi"), "logprobs": True}, "logprobs"),
        (
            {"model": MODEL, "messages": ask("hi"), "response_format": {"type": "json_object"}},
            "response_format",
        ),
        ({"model": MODEL, "messages": ask("hi"), "temperature": 1.5}, "temperature"),
        ({"model": MODEL, "messages": ask("hi"), "max_tokens": 10**9}, "max_tokens"),
        ({"model": MODEL, "messages": ask("hi"), "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": MODEL, "messages": ask("hi"), "seed": 3}, "seed"),
        (
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_param(client, body, param):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(**body)
    assert raised.value.param == param
    assert raised.value.body["type"] == "invalid_request_error"


def test_an_unknown_model_is_openais_404(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=ask("hi"))
    assert raised.value.code == "model_not_found" and raised.value.param == "model"


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_a_whole_tool_calling_round_trip(client, standin):
    question = ask("[standin tokens=3 tool=get_weather id=oa-tool] what is the weather?")
    first = client.chat.completions.create(model=MODEL, messages=question, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Zürich", "unit": "celsius"}
    assert wait_for_record(standin, "oa-tool", "complete").tools == ["get_weather"]
    # The client runs the tool and sends its answer back; the model answers in words.
    history = [*question, choice.message.model_dump(exclude_none=True), tool_answer(call.id, "21 degrees")]
    second = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content
    answered = [r for r in standin.records if r.tool_results]
    assert answered[-1].tool_results == [(call.id, "21 degrees")]


def tool_answer(call_id: str, text: str) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def test_streamed_tool_calls_arrive_as_fragments(client):
    question = ask("[standin tokens=2 tool=get_weather] weather?")
    chunks = list(
        client.chat.completions.create(model=MODEL, messages=question, tools=[WEATHER], stream=True)
    )
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert calls[0].id and calls[0].function.name == "get_weather" and calls[0].index == 0
    assert len(calls) > 2 and all(call.index == 0 for call in calls)
    arguments = "".join(call.function.arguments or "" for call in calls)
    assert json.loads(arguments) == {"city": "Zürich", "unit": "celsius"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


PNG = b64(png())


def test_an_image_reaches_bedrock_as_an_image_block(client, standin):
    content = [
        {"type": "text", "text": "[standin tokens=3 id=oa-image] what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    assert wait_for_record(standin, "oa-image", "complete").attachments[0]["kind"] == "image"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cat.png",
        "data:image/bmp;base64,AAAA",
        "data:image/png;base64,not base64!",
        "data:,",
    ],
)
def test_a_bad_image_is_refused_naming_the_part(client, url):
    content = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    assert raised.value.param == "messages[0].content[1]"


def test_tool_messages_need_tools_and_a_call_id(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=[*ask("hi"), tool_answer("x", "y")])
    assert raised.value.param == "tools"
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=MODEL, messages=[*ask("hi"), {"role": "tool", "content": "y"}], tools=[WEATHER]
        )
    assert raised.value.param == "messages[1].tool_call_id"


def test_with_sign_in_a_bearer_key_is_the_api_key_and_refusals_are_openais(standin):
    hashes, headers = caller_keys("sdk")
    app = start_app(standin.url, AUTH_MODE="api_key", API_KEY_HASHES=hashes)
    try:
        key = headers["sdk"]["X-Api-Key"]
        signed = openai.OpenAI(base_url=f"{app.url}/v1", api_key=key, max_retries=0, timeout=30)
        assert signed.chat.completions.create(model=MODEL, messages=ask("[standin tokens=2] hi")).choices
        stranger = openai.OpenAI(base_url=f"{app.url}/v1", api_key="not-a-key", max_retries=0, timeout=30)
        with pytest.raises(openai.AuthenticationError) as raised:
            stranger.chat.completions.create(model=MODEL, messages=ask("hi"))
        assert raised.value.body["type"] == "authentication_error"
        assert raised.value.code == "unknown_api_key"
    finally:
        app.stop()


def test_with_the_store_a_completion_can_be_cancelled_from_anywhere(standin, dynamodb):
    app = start_app(standin.url, **store_env(dynamodb), BEDROCK_MAX_ATTEMPTS="1")
    try:
        sdk = openai.OpenAI(base_url=f"{app.url}/v1", api_key="local", max_retries=0, timeout=30)
        prompt = ask("[standin tokens=2000 tps=20 ttft=0 id=oa-cancel] go")
        with sdk.chat.completions.with_streaming_response.create(
            model=MODEL, messages=prompt, stream=True
        ) as raw:
            stream_id = raw.headers["x-stream-id"]
            chunks = raw.parse()
            next(iter(chunks))
            assert httpx.post(f"{app.url}/chat/{stream_id}/cancel", timeout=10).status_code == 202
            wait_for_record(standin, "oa-cancel", "client_closed")
            # A cancelled answer is not a whole one: the SDK raises rather than finish quietly.
            with pytest.raises(openai.APIError, match="cancelled"):
                list(chunks)
    finally:
        app.stop()


def test_cached_prompt_tokens_are_reported_when_bedrock_reports_them(client):
    completion = client.chat.completions.create(
        model=MODEL, messages=ask("[standin tokens=2 cached=1024] hi")
    )
    assert completion.usage.prompt_tokens_details.cached_tokens == 1024
    plain = client.chat.completions.create(model=MODEL, messages=ask("[standin tokens=2] hi"))
    assert plain.usage.prompt_tokens_details is None


def test_an_oversized_image_is_refused_before_bedrock_is_called():
    from bedrock_relay.attachments import MAX_IMAGE_BYTES
    from bedrock_relay.openai_request import OpenAIRequestError, parse
    from bedrock_relay.settings import Settings

    big = base64.b64encode(b"\0" * (MAX_IMAGE_BYTES + 1)).decode()
    content = [
        {"type": "text", "text": "hi"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{big}"}},
    ]
    with pytest.raises(OpenAIRequestError) as raised:
        parse({"model": MODEL, "messages": [{"role": "user", "content": content}]}, Settings())
    assert raised.value.param == "messages[0].content[1]" and str(MAX_IMAGE_BYTES) in raised.value.message


NUMBERED_DESCRIPTION = {**WEATHER, "function": {**WEATHER["function"], "description": 5}}


def raw(app: AppProcess, body: object) -> httpx.Response:
    return httpx.post(f"{app.url}/v1/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0]"),
        (
            {"tools": [{**WEATHER, "function": {**WEATHER["function"], "description": 5}}]},
            "tools[0].function.description",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "other"}}},
            "tool_choice",
        ),
        ({"parallel_tool_calls": False, "tools": [WEATHER]}, "parallel_tool_calls"),
    ],
)
def test_tools_bedrock_would_refuse_are_a_400_naming_the_param(app, body, param):
    response = raw(app, {"model": MODEL, "messages": ask("hi"), **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_tool_call_arguments_must_be_a_json_object(app):
    history = [
        *ask("hi"),
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {}}]},
    ]
    for arguments, status in (({"city": "Oslo"}, 200), ("[1, 2]", 400), (5, 400)):
        history[1]["tool_calls"][0]["function"] = {"name": "get_weather", "arguments": arguments}
        messages = [*history, tool_answer("c1", "")]  # an empty output is sent as words, never blank
        response = raw(app, {"model": MODEL, "messages": messages, "tools": [WEATHER]})
        assert response.status_code == status, response.text
        if status == 400:
            assert response.json()["error"]["param"] == "messages[1].tool_calls[0].function.arguments"


def test_a_deeply_nested_body_is_a_400_not_a_crash(app):
    response = httpx.post(f"{app.url}/v1/chat/completions", content=b"[" * 5000, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_blank_text_and_system_parts_are_left_out_not_sent_blank(app, standin):
    content = [
        {"type": "text", "text": "  "},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "text", "text": "[standin tokens=2 id=oa-blank] and this?"},
    ]
    messages = [{"role": "system", "content": ""}, {"role": "user", "content": content}]
    assert raw(app, {"model": MODEL, "messages": messages}).status_code == 200
    assert wait_for_record(standin, "oa-blank", "complete").attachments[0]["kind"] == "image"


def test_a_failure_that_would_fail_again_tells_the_sdk_not_to_retry(app, standin):
    sdk = openai.OpenAI(base_url=f"{app.url}/v1", api_key="local", timeout=30)  # the SDK's own retries on
    prompt = ask("[standin tokens=5 stream_error=validationException after=2 id=oa-noretry] hi")
    with pytest.raises(openai.InternalServerError) as raised:
        sdk.chat.completions.create(model=MODEL, messages=prompt)
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert len([r for r in standin.records if r.scenario["id"] == "oa-noretry"]) == 1


def test_a_tool_call_without_input_has_empty_object_arguments():
    from bedrock_relay.events import Stop, Summary, ToolUse
    from bedrock_relay.openai_formats import ChunkWriter, CompletionWriter

    summary = Summary(stop_reason=Stop("tool_use").reason)
    whole = CompletionWriter("r", MODEL)
    whole.tool(ToolUse(1, "t1", "now"))
    answer = json.loads(whole.end(summary))
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"
    chunks = ChunkWriter("r", MODEL, include_usage=False)
    streamed = (chunks.tool(ToolUse(1, "t1", "now")) + chunks.end(summary)).decode()
    assert '"arguments":"{}"' in streamed and streamed.endswith("data: [DONE]\n\n")
