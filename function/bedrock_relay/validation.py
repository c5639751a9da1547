"""Checks a /chat request body and turns it into a ConverseStream request."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from .attachments import AttachmentError, Attachments, lacks_text
from .settings import Settings

# Input echoed in an error message is cut to this: the message must name the problem, not
# carry a megabyte of the client's own bytes back to it and into the log.
ECHO_CHARACTERS = 40
FIELDS = {
    "prompt",
    "messages",
    "conversationId",
    "store",
    "system",
    "modelId",
    "maxTokens",
    "temperature",
    "topP",
    "stopSequences",
    "cache",
    "reasoning",
}
# How each model family is asked to reason, with a budget of tokens: one entry per family.
REASONING_FIELDS = {
    "anthropic.claude": lambda budget: {"thinking": {"type": "enabled", "budget_tokens": budget}},
}
MIN_REASONING_BUDGET = 1024
CACHE_FIELDS = {"system", "messages", "ttl", "answer"}
CACHE_TTLS = ("5m", "1h")
# A conversation id, as the service makes them (a UUID), or at least one that could be.
CONVERSATION_ID = re.compile(r"[A-Za-z0-9-]{1,128}")
MAX_STOP_SEQUENCES = 4
# The blocks a message's content list may hold, and the fields of each attachment.
BLOCK_FIELDS = {"text": set(), "image": {"format", "data"}, "document": {"format", "name", "data"}}


class InvalidRequest(ValueError):
    """The request body is not a valid chat request; the message names the field."""

    def __init__(self, message: str, code: str = "invalid_request"):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat request: the model to call and the ConverseStream arguments."""

    model_id: str
    converse_args: dict
    conversation_id: str | None = None
    prompt: str | None = None  # the new user turn, for a conversation to keep
    # Keep the exchange in a conversation: as asked (`store`, or a conversation to go on with), and
    # when not asked, for a `prompt` whenever the store is on, for `messages` never.
    store: bool | None = None
    answer_cache: bool = True  # False: `cache.answer` asks for a fresh answer, whatever is cached

    @property
    def keep(self) -> bool:
        """Whether the exchange is kept in a conversation, once the store is on."""
        return self.store if self.store is not None else self.prompt is not None


def shorten(text: str, limit: int = ECHO_CHARACTERS) -> str:
    """Return text cut to `limit` characters, marked with its full length when it was cut."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def excerpt(value: object) -> str:
    """Return a value for an error message: a string quoted, anything else as written, cut short."""
    return shorten(repr(value) if isinstance(value, str) else str(value))


def parse_body(raw: bytes) -> dict:
    """Decode the body as a JSON object, whatever the Content-Type said."""
    if not raw.strip():
        raise InvalidRequest('the body is empty: send a JSON object such as {"prompt": "Hi"}', "invalid_json")
    try:
        body = json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not UTF-8 encoded JSON", "invalid_json") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            # Python's own words here name its interpreter settings; say what is wrong with the body.
            raise InvalidRequest("the body holds a number of more than 4300 digits", "invalid_json") from None
        raise InvalidRequest(f"the body is not valid JSON: {exc}", "invalid_json") from None
    except RecursionError:
        raise InvalidRequest("the body is nested too deeply", "invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", "invalid_json")
    return body


def _string(body: dict, name: str) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string")
    if not value.strip():
        raise InvalidRequest(f"'{name}' must not be empty")
    return value


def _number(body: dict, name: str, low: float, high: float, integer: bool = False) -> float:
    value = body[name]
    if integer and isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 364.0 is the integer 364, as JSON Schema says
    # bool is an int in Python, but `true` is not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise InvalidRequest(f"'{name}' must be {'an integer' if integer else 'a number'}")
    if not (low <= value <= high) or (isinstance(value, float) and math.isnan(value)):
        raise InvalidRequest(f"'{name}' must be between {low:g} and {high:g}, got {excerpt(value)}")
    return value


def _messages(body: dict) -> list[dict]:
    if ("prompt" in body) == ("messages" in body):
        raise InvalidRequest("send exactly one of 'prompt' or 'messages'")
    if "prompt" in body:
        return [{"role": "user", "content": [{"text": _string(body, "prompt")}]}]
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list")
    converted = []
    attachments = Attachments()
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise InvalidRequest(f"'{where}' must be an object with exactly 'role' and 'content'")
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise InvalidRequest(
                f"'{where}.role' must be '{expected}': roles alternate, starting with 'user'"
            )
        content = message["content"]
        if isinstance(content, list) and content:
            blocks = _blocks(content, f"{where}.content", expected, attachments)
        elif isinstance(content, str) and content.strip():
            blocks = [{"text": content}]
        else:
            raise InvalidRequest(
                f"'{where}.content' must be a non-empty string or a non-empty list of blocks"
            )
        converted.append({"role": expected, "content": blocks})
    if converted[-1]["role"] != "user":
        raise InvalidRequest("'messages' must end with a 'user' message")
    return converted


def _blocks(content: list, where: str, role: str, attachments: Attachments) -> list[dict]:
    """A message's list of text, image and document blocks as Converse blocks, each checked by name."""
    blocks = []
    for index, block in enumerate(content):
        place = f"{where}[{index}]"
        kind = next(iter(block)) if isinstance(block, dict) and len(block) == 1 else None
        if kind not in BLOCK_FIELDS:
            raise InvalidRequest(
                f'\'{place}\' must be one of {{"text": ...}}, {{"image": ...}} or {{"document": ...}}'
            )
        value = block[kind]
        if kind == "text":
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest(f"'{place}.text' must be a non-empty string")
            blocks.append({"text": value})
            continue
        if role != "user":
            raise InvalidRequest(f"'{place}': only a user's message may hold an {kind}")
        if not isinstance(value, dict) or set(value) != BLOCK_FIELDS[kind]:
            fields = ", ".join(f"'{name}'" for name in sorted(BLOCK_FIELDS[kind]))
            raise InvalidRequest(f"'{place}.{kind}' must be an object with exactly {fields}")
        try:
            if kind == "image":
                blocks.append(attachments.image(value["format"], value["data"]))
            else:
                blocks.append(attachments.document(value["format"], value["name"], value["data"]))
        except AttachmentError as exc:
            field = f"{place}.{kind}" if exc.field == kind else f"{place}.{kind}.{exc.field}"
            raise InvalidRequest(f"'{field}' {exc.message}") from None
    if lacks_text(blocks):
        raise InvalidRequest(f"'{where}' holds a document, so it needs a text block too (Bedrock's rule)")
    return blocks


def validate(body: dict, settings: Settings) -> ChatRequest:
    """Check every field of a chat request and build the ConverseStream arguments."""
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field {excerpt(unknown[0])}; allowed: {', '.join(sorted(FIELDS))}")
    conversation_id = None
    if "conversationId" in body:
        conversation_id = _string(body, "conversationId")
        if not CONVERSATION_ID.fullmatch(conversation_id):
            raise InvalidRequest(f"'conversationId' {excerpt(conversation_id)} is not a conversation id")
    if "store" in body and not isinstance(body["store"], bool):
        raise InvalidRequest("'store' must be true or false")
    store = body.get("store", True if conversation_id else None)
    if conversation_id is not None and not store:
        raise InvalidRequest("'store' cannot be false with 'conversationId': the exchange is kept in it")
    messages = _messages(body)
    model_id = settings.model_id
    if "modelId" in body:
        model_id = _string(body, "modelId")
        if model_id not in settings.allowed_model_ids:
            allowed = ", ".join(settings.allowed_model_ids)
            raise InvalidRequest(f"'modelId' {excerpt(model_id)} is not allowed; allowed: {allowed}")
    args: dict = {"modelId": model_id, "messages": messages}
    if "system" in body:
        args["system"] = [{"text": _string(body, "system")}]
    inference: dict = {}
    if "maxTokens" in body:
        inference["maxTokens"] = _number(body, "maxTokens", 1, settings.max_tokens_limit, integer=True)
    for name in ("temperature", "topP"):
        if name in body:
            inference[name] = _number(body, name, 0, 1)
    if "stopSequences" in body:
        stops = body["stopSequences"]
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise InvalidRequest("'stopSequences' must be a list of non-empty strings")
        if len(stops) > MAX_STOP_SEQUENCES:
            raise InvalidRequest(f"'stopSequences' may hold at most {MAX_STOP_SEQUENCES} strings")
        inference["stopSequences"] = stops
    if "reasoning" in body:
        _reasoning(body, args, inference, settings)
    if inference:
        args["inferenceConfig"] = inference
    answer_cache = True
    if "cache" in body:
        answer_cache = _cache_points(body, args)
    return ChatRequest(model_id, args, conversation_id, body.get("prompt"), store, answer_cache)


def _reasoning(body: dict, args: dict, inference: dict, settings: Settings) -> None:
    """Ask the model to reason within a budget, in its family's own field; refuse what Bedrock would."""
    reasoning = body["reasoning"]
    if not isinstance(reasoning, dict) or set(reasoning) != {"budgetTokens"}:
        raise InvalidRequest("'reasoning' must be an object with 'budgetTokens'")
    model_id = args["modelId"]
    family = next((name for name in REASONING_FIELDS if name in model_id), None)
    if family is None:
        raise InvalidRequest(
            f"'reasoning' is not available for {excerpt(model_id)}: it takes no reasoning budget"
        )
    budget = reasoning["budgetTokens"]
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < MIN_REASONING_BUDGET:
        raise InvalidRequest(
            f"'reasoning.budgetTokens' must be an integer of at least {MIN_REASONING_BUDGET}"
        )
    # Claude's extended thinking takes neither a changed temperature nor top-p.
    for name in ("temperature", "topP"):
        if name in inference:
            raise InvalidRequest(f"'{name}' cannot be set together with 'reasoning'")
    inference.setdefault("maxTokens", settings.max_tokens_limit)
    if inference["maxTokens"] <= budget:
        raise InvalidRequest(
            "'maxTokens' must be more than 'reasoning.budgetTokens': the answer comes after it"
        )
    args["additionalModelRequestFields"] = REASONING_FIELDS[family](budget)


def _cache_points(body: dict, args: dict) -> bool:
    """Place Converse cachePoint blocks where `cache` asks: after the system prompt, after message N.

    Return whether a cached answer may be used (`cache.answer`, true unless said otherwise).
    """
    cache = body["cache"]
    if not isinstance(cache, dict) or not cache:
        raise InvalidRequest("'cache' must be an object with 'system', 'messages', 'ttl' or 'answer'")
    unknown = sorted(set(cache) - CACHE_FIELDS)
    if unknown:
        allowed = ", ".join(sorted(CACHE_FIELDS))
        raise InvalidRequest(f"unknown field 'cache.{shorten(unknown[0])}'; allowed: {allowed}")
    answer = cache.get("answer", True)
    if not isinstance(answer, bool):
        raise InvalidRequest("'cache.answer' must be true or false")
    point: dict = {"type": "default"}
    if "ttl" in cache:
        if cache["ttl"] not in CACHE_TTLS:
            raise InvalidRequest(f"'cache.ttl' must be one of {', '.join(CACHE_TTLS)}")
        point["ttl"] = cache["ttl"]
    system = cache.get("system", False)
    if not isinstance(system, bool):
        raise InvalidRequest("'cache.system' must be true or false")
    if system:
        if "system" not in args:
            raise InvalidRequest("'cache.system' needs a 'system' prompt to cache")
        args["system"].append({"cachePoint": dict(point)})
    if "messages" in cache:
        count = cache["messages"]
        messages = args["messages"]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(messages):
            raise InvalidRequest(f"'cache.messages' must be a message count, 1 to {len(messages)}")
        messages[count - 1]["content"].append({"cachePoint": dict(point)})
    return answer
