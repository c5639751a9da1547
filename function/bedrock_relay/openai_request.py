"""An OpenAI Chat Completions request, checked and turned into ConverseStream arguments."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .settings import Settings
from .validation import excerpt

ROLES = ("system", "developer", "user", "assistant", "tool")
# Fields the relay honours; anything else is refused by name, never silently dropped.
FIELDS = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "user",
    "n",
    "logprobs",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
}
MAX_STOP_SEQUENCES = 4


class OpenAIRequestError(ValueError):
    """The request cannot be served; `param` names the field, as OpenAI's errors do."""

    def __init__(self, message: str, param: str | None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


@dataclass(frozen=True)
class CompletionRequest:
    """A checked request: the model, the ConverseStream arguments, and how to answer."""

    model_id: str
    converse_args: dict
    stream: bool
    include_usage: bool
    user: str | None


def parse(body: Any, settings: Settings) -> CompletionRequest:
    """Check every field and build the ConverseStream arguments; raise OpenAIRequestError naming the field."""
    if not isinstance(body, dict):
        raise OpenAIRequestError("the body must be a JSON object", None)
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise OpenAIRequestError(f"unsupported field {excerpt(unknown[0])}", unknown[0])
    _refuse_what_bedrock_cannot_honour(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIRequestError("'model' must be one of the ids GET /v1/models lists", "model")
    if model not in settings.allowed_model_ids:
        message = f"The model {excerpt(model)} does not exist or you do not have access to it."
        raise OpenAIRequestError(message, "model", 404, "model_not_found")
    system, messages = _messages(body.get("messages"))
    args: dict = {"modelId": model, "messages": messages}
    if system:
        args["system"] = [{"text": text} for text in system]
    inference = _inference(body, settings)
    if inference:
        args["inferenceConfig"] = inference
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise OpenAIRequestError("'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise OpenAIRequestError("'stream_options' may hold only 'include_usage'", "stream_options")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise OpenAIRequestError("'user' must be a string", "user")
    return CompletionRequest(model, args, stream, bool(options.get("include_usage")), user)


def _refuse_what_bedrock_cannot_honour(body: dict) -> None:
    if body.get("n", 1) != 1:
        raise OpenAIRequestError("'n' must be 1: Bedrock writes one answer per request", "n")
    if body.get("logprobs"):
        raise OpenAIRequestError("'logprobs' is not available from Bedrock's Converse API", "logprobs")
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        message = '\'response_format\' may only be {"type": "text"}: these models have no JSON mode here'
        raise OpenAIRequestError(message, "response_format")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name, 0) not in (0, None):
            raise OpenAIRequestError(f"'{name}' is not available from Bedrock's Converse API", name)


def _text(content: Any, where: str) -> str:
    """A message's content as text: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        parts = []
        for index, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                kind = part.get("type") if isinstance(part, dict) else None
                detail = f"'{kind}' parts are not supported yet" if kind else "each part must be a text part"
                raise OpenAIRequestError(detail, f"{where}.content[{index}]")
            parts.append(part["text"])
        return "".join(parts)
    raise OpenAIRequestError("'content' must be a string or a list of text parts", f"{where}.content")


def _messages(raw: Any) -> tuple[list[str], list[dict]]:
    """Split system (and developer) text from the turns, merging turns of one role, as Converse wants."""
    if not isinstance(raw, list) or not raw:
        raise OpenAIRequestError("'messages' must be a non-empty list", "messages")
    system: list[str] = []
    turns: list[dict] = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise OpenAIRequestError("each message must be an object", where)
        role = message.get("role")
        if role not in ROLES:
            raise OpenAIRequestError(f"'role' must be one of {', '.join(ROLES)}", f"{where}.role")
        if role == "tool":
            raise OpenAIRequestError("tool messages are not supported yet", f"{where}.role")
        if message.get("tool_calls"):
            raise OpenAIRequestError("tool calls are not supported yet", f"{where}.tool_calls")
        text = _text(message.get("content"), where)
        if role in ("system", "developer"):
            system.append(text)
            continue
        if not text.strip():
            raise OpenAIRequestError("'content' must not be empty", f"{where}.content")
        if turns and turns[-1]["role"] == role:
            # Converse wants roles to alternate: consecutive turns of one role become one.
            turns[-1]["content"].append({"text": text})
        else:
            turns.append({"role": role, "content": [{"text": text}]})
    if not turns or turns[0]["role"] != "user":
        raise OpenAIRequestError("the first message after any system messages must be 'user'", "messages")
    if turns[-1]["role"] != "user":
        raise OpenAIRequestError("the last message must be 'user'", "messages")
    return system, turns


def _number(body: dict, name: str, low: float, high: float, integer: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if integer and isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise OpenAIRequestError(f"'{name}' must be {'an integer' if integer else 'a number'}", name)
    if not low <= value <= high or (isinstance(value, float) and math.isnan(value)):
        raise OpenAIRequestError(f"'{name}' must be between {low:g} and {high:g}, got {excerpt(value)}", name)
    return value


def _inference(body: dict, settings: Settings) -> dict:
    inference: dict = {}
    for name in ("max_completion_tokens", "max_tokens"):
        limit = _number(body, name, 1, settings.max_tokens_limit, integer=True)
        if limit is not None:
            inference["maxTokens"] = limit
            break
    # OpenAI allows temperature up to 2; Bedrock's models take 0 to 1.
    for name, key in (("temperature", "temperature"), ("top_p", "topP")):
        value = _number(body, name, 0, 1)
        if value is not None:
            inference[key] = value
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise OpenAIRequestError("'stop' must be a string or a list of non-empty strings", "stop")
        if len(stops) > MAX_STOP_SEQUENCES:
            raise OpenAIRequestError(f"'stop' may hold at most {MAX_STOP_SEQUENCES} strings", "stop")
        inference["stopSequences"] = stops
    return inference
