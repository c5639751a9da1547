"""The Bedrock boundary: the one place that talks to bedrock-runtime; its stream becomes an upstream."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EventStreamError,
    ParamValidationError,
    ReadTimeoutError,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

from . import aws
from .events import (
    Event,
    Failure,
    Guardrail,
    Reasoning,
    RedactedReasoning,
    Stop,
    Text,
    ToolInput,
    ToolUse,
    Usage,
)
from .settings import Settings

# HTTP status for each error converse_stream() raises before the stream starts.
UPSTREAM_STATUS = {
    "ValidationException": 400,
    "ResourceNotFoundException": 404,
    "ThrottlingException": 429,
    "ModelNotReadyException": 503,
    "ServiceUnavailableException": 503,
    "ModelTimeoutException": 504,
}
# In-stream exceptions a client may retry; a validationException will fail the same way again.
# botocore hands the raw HTTP response of an event stream to `before-parse` handlers, and merges
# what they add into the parsed response: the one public way to the socket that close() must wake.
_HTTP_RESPONSE_KEY = "RelayHttpResponse"
RETRYABLE_STREAM_ERRORS = {
    "throttlingException",
    "serviceUnavailableException",
    "internalServerException",
    "modelStreamErrorException",
}


class UpstreamError(Exception):
    """Bedrock refused the request before streaming; carries the HTTP status to answer with."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: int | None = None, attempts: int = 1
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.attempts = attempts


def make_client(settings: Settings) -> Any:
    """Build the bedrock-runtime client; its endpoint comes from AWS_ENDPOINT_URL_BEDROCK_RUNTIME."""
    config = Config(
        region_name=settings.region,
        read_timeout=settings.bedrock_read_timeout_seconds,
        connect_timeout=settings.bedrock_connect_timeout_seconds,
        # botocore retries only the initial call, never a stream that has started.
        retries={"mode": "standard", "total_max_attempts": settings.bedrock_max_attempts},
        tcp_keepalive=True,
    )
    # botocore directly: boto3 adds only import time here (it loads s3transfer), the client is the same.
    client = aws.session().create_client("bedrock-runtime", config=config)
    client.meta.events.register("before-parse.bedrock-runtime.ConverseStream", _keep_http_response)
    if settings.guardrail_id:
        guardrail = {
            "guardrailIdentifier": settings.guardrail_id,
            "guardrailVersion": settings.guardrail_version,
            "streamProcessingMode": settings.guardrail_stream_mode,
            "trace": "enabled" if settings.guardrail_trace else "disabled",
        }

        # Added at the boundary, to every call from every front door: no request can leave it out.
        def add_guardrail(params: dict, **_: Any) -> None:
            params["guardrailConfig"] = dict(guardrail)

        client.meta.events.register("before-parameter-build.bedrock-runtime.ConverseStream", add_guardrail)
    return client


def _keep_http_response(response_dict: dict, customized_response_dict: dict, **_: Any) -> None:
    customized_response_dict[_HTTP_RESPONSE_KEY] = response_dict.get("body")


def open_stream(client: Any, request: dict, retry_after: int) -> BedrockStream:
    """Call converse_stream and return its stream as an upstream, or raise UpstreamError."""
    try:
        response = client.converse_stream(**request)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "UpstreamError")
        status = UPSTREAM_STATUS.get(code, 502)
        metadata = exc.response.get("ResponseMetadata", {})
        headers = metadata.get("HTTPHeaders", {})
        wait = _retry_after(headers.get("retry-after"), retry_after) if status == 429 else None
        message = f"Bedrock: {error.get('Message', code)}"
        raise UpstreamError(status, code, message, wait, metadata.get("RetryAttempts", 0) + 1) from exc
    except ParamValidationError as exc:
        # botocore's own check of the request's shape: the caller's input, not Bedrock being down.
        raise UpstreamError(400, "ValidationException", f"Bedrock would refuse the request: {exc}") from exc
    except BotoCoreError as exc:
        raise UpstreamError(502, "UpstreamUnavailable", f"Bedrock could not be reached: {exc}") from exc
    return BedrockStream(response["stream"], response.get(_HTTP_RESPONSE_KEY))


def guardrail_of(trace: dict | None) -> Guardrail | None:
    """What a guardrail's trace says intervened: input or output, and which policies; never the text."""
    if not trace:
        return None
    for source, key in (("input", "inputAssessment"), ("output", "outputAssessments")):
        assessments = trace.get(key) or {}
        found = set()
        for value in assessments.values():
            for assessment in value if isinstance(value, list) else [value]:
                found |= {name for name in assessment if name.endswith("Policy")}
        if found:
            return Guardrail(source, tuple(sorted(found)))
    return None


def _retry_after(header: str | None, default: int) -> int:
    """Pass Bedrock's own Retry-After on when it sends one."""
    try:
        return max(1, int(header)) if header else default
    except ValueError:
        return default


class BedrockStream:
    """One ConverseStream as the relay's upstream: the service's events, and a close() that stops billing."""

    def __init__(self, stream: Any, http_response: Any = None):
        self._stream = stream
        self._http_response = http_response
        # urllib3 returns the connection to the pool inside the read that ends the stream, and only
        # then forgets it: close() must not shut down a socket that may already serve another stream.
        self._lock = threading.Lock()
        self._released = False
        if http_response is not None:
            release = http_response.release_conn

            def release_conn() -> None:
                with self._lock:
                    self._released = True
                    release()

            http_response.release_conn = release_conn

    def __iter__(self) -> Iterator[Event]:
        """Yield the service's events, ending with a Failure if the stream broke."""
        stopped = finished = False
        seq = 0
        try:
            for event in self._stream:
                if "contentBlockDelta" in event:
                    delta = event["contentBlockDelta"]["delta"]
                    if "text" in delta:
                        seq += 1
                        yield Text(seq, delta["text"])
                    elif "reasoningContent" in delta:
                        reasoning = delta["reasoningContent"]
                        if "text" in reasoning:
                            seq += 1
                            yield Reasoning(seq, reasoning["text"])
                        elif "redactedContent" in reasoning:
                            yield RedactedReasoning(len(reasoning["redactedContent"]))
                    elif "toolUse" in delta:
                        index = event["contentBlockDelta"]["contentBlockIndex"]
                        yield ToolInput(index, delta["toolUse"]["input"])
                elif "contentBlockStart" in event:
                    tool = event["contentBlockStart"].get("start", {}).get("toolUse")
                    if tool:
                        index = event["contentBlockStart"]["contentBlockIndex"]
                        yield ToolUse(index, tool["toolUseId"], tool["name"])
                elif "messageStop" in event:
                    stopped = True
                    yield Stop(event["messageStop"]["stopReason"])
                elif "metadata" in event:
                    finished = True
                    guardrail = guardrail_of(event["metadata"].get("trace", {}).get("guardrail"))
                    if guardrail is not None:
                        yield guardrail
                    usage = event["metadata"].get("usage", {})
                    yield Usage(
                        usage.get("inputTokens", 0),
                        usage.get("outputTokens", 0),
                        usage.get("totalTokens", 0),
                        event["metadata"].get("metrics", {}).get("latencyMs"),
                        usage.get("cacheReadInputTokens"),
                        usage.get("cacheWriteInputTokens"),
                    )
        except EventStreamError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "streamError")
            yield Failure(code, f"Bedrock: {error.get('Message', code)}", code in RETRYABLE_STREAM_ERRORS)
            return
        except (ReadTimeoutError, Urllib3ReadTimeout):
            yield Failure("read_timeout", "Bedrock sent nothing within the read timeout", True)
            return
        except (BotoCoreError, Urllib3Error, OSError) as exc:
            yield Failure("connection_error", f"the connection to Bedrock broke: {exc}", True)
            return
        if not (stopped and finished):
            # botocore ends iteration quietly when a stream stops mid-frame.
            yield Failure("truncated", "the Bedrock stream ended before the message was complete", True)

    def close(self) -> None:
        """Close the Bedrock connection at once, waking a reader blocked on it, so billing stops."""
        with self._lock:
            if self._released:
                return
            # close() alone does not wake a thread blocked in recv() on Linux; shutdown() does.
            with contextlib.suppress(AttributeError, ValueError, RuntimeError, OSError):
                self._http_response.shutdown()
            self._stream.close()
