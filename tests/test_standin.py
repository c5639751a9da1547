"""The stand-in speaks Bedrock's real wire format: botocore's own decoder and boto3 client read it."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.config import Config
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from standin import eventstream
from standin.scenarios import STAMP, Scenario, ScenarioError, parse
from tests.harness import OFFLINE_AWS_ENV


@pytest.fixture
def bedrock(standin, monkeypatch):
    """A real boto3 bedrock-runtime client pointed at the stand-in."""
    for name, value in OFFLINE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    config = Config(retries={"max_attempts": 1, "mode": "standard"})
    return boto3.client("bedrock-runtime", endpoint_url=standin.url, config=config)


def converse(bedrock, prompt: str) -> list[dict]:
    response = bedrock.converse_stream(
        modelId="m", messages=[{"role": "user", "content": [{"text": prompt}]}]
    )
    return list(response["stream"])


def test_frame_decodes_with_botocore_parser():
    buffer = EventStreamBuffer()
    buffer.add_data(eventstream.event("contentBlockDelta", {"delta": {"text": "héllo"}}))
    (message,) = list(buffer)
    assert message.headers[":event-type"] == "contentBlockDelta"
    assert message.headers[":message-type"] == "event"
    assert message.payload.decode() == '{"delta":{"text":"héllo"}}'


def test_corrupted_frame_fails_the_checksum():
    frame = bytearray(eventstream.event("messageStop", {"stopReason": "end_turn"}))
    frame[-6] ^= 0xFF
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


def test_boto3_reads_a_whole_conversation(bedrock):
    events = converse(bedrock, "hello [standin tokens=5 tps=0 ttft=0 reasoning=2]")
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    deltas = [e["contentBlockDelta"]["delta"] for e in events if "contentBlockDelta" in e]
    assert sum("reasoningContent" in d for d in deltas) == 2
    assert sum("text" in d for d in deltas) == 5
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 5


def test_boto3_raises_in_stream_exceptions(bedrock):
    with pytest.raises(EventStreamError) as caught:
        converse(bedrock, "[standin stream_error=modelStreamErrorException after=1]")
    assert caught.value.response["Error"]["Code"] == "modelStreamErrorException"


def test_boto3_raises_errors_before_the_stream(bedrock):
    with pytest.raises(ClientError) as caught:
        converse(bedrock, "[standin error=AccessDeniedException]")
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_midframe_truncation_ends_iteration_without_error(bedrock):
    events = converse(bedrock, "[standin truncate=midframe after=2 tps=0]")
    assert "messageStop" not in [next(iter(e)) for e in events]


def test_tag_overrides_defaults_and_rejects_unknown_keys():
    assert parse("x [standin tokens=3 tps=0]", Scenario()).tokens == 3
    assert parse("no tag", Scenario(tokens=7)).tokens == 7
    with pytest.raises(ScenarioError, match="unknown key"):
        parse("[standin bogus=1]", Scenario())
    with pytest.raises(ScenarioError, match="stream_error"):
        parse("[standin stream_error=nope]", Scenario())


def test_stamped_deltas_carry_their_index_and_emit_time(bedrock):
    before = time.monotonic()
    events = converse(bedrock, "[standin tokens=4 tps=0 ttft=0 stamp=1]")
    after = time.monotonic()
    texts = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    stamps = [STAMP.search(text) for text in texts]
    assert [int(m.group(1)) for m in stamps] == [0, 1, 2, 3]
    emitted = [float(m.group(2)) for m in stamps]
    assert before <= emitted[0] <= emitted[-1] <= after
    assert all(text[: m.start()].strip() for text, m in zip(texts, stamps, strict=True))
