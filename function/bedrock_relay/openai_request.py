"""An OpenAI Chat Completions request, checked and turned into ConverseStream arguments."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .attachments import AttachmentError, Attachments, lacks_text, safe_name
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
    "tools",
    "tool_choice",
    "parallel_tool_calls",
}
# The media types of data: URLs, as the Converse formats they are sent in.
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
DOCUMENT_TYPES = {"application/pdf": "pdf", "text/csv": "csv", "text/plain": "txt", "text/markdown": "md"}
MAX_STOP_SEQUENCES = 4
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


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
    system, messages, uses_tools = _messages(body.get("messages"))
    args: dict = {"modelId": model, "messages": messages}
    if system:
        args["system"] = [{"text": text} for text in system if text.strip()]
        if not args["system"]:
            del args["system"]
    tool_config = _tool_config(body, uses_tools)
    if tool_config:
        args["toolConfig"] = tool_config
    inference = _inference(body, settings)
    if inference:
        args["inferenceConfig"] = inference
    stream = body.get("stream") or False
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
    if body.get("n") not in (None, 1):
        raise OpenAIRequestError("'n' must be 1: Bedrock writes one answer per request", "n")
    if body.get("logprobs"):
        raise OpenAIRequestError("'logprobs' is not available from Bedrock's Converse API", "logprobs")
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        message = '\'response_format\' may only be {"type": "text"}: these models have no JSON mode here'
        raise OpenAIRequestError(message, "response_format")
    if body.get("parallel_tool_calls") is False:
        message = "'parallel_tool_calls' false cannot be honoured: Bedrock's models decide that themselves"
        raise OpenAIRequestError(message, "parallel_tool_calls")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name, 0) not in (0, None):
            raise OpenAIRequestError(f"'{name}' is not available from Bedrock's Converse API", name)


def _blocks(content: Any, where: str, attachments: Attachments) -> list[dict]:
    """A user message's content as Converse blocks: a string, or a list of text, image_url and file parts."""
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list) or not content:
        raise OpenAIRequestError(
            "'content' must be a string or a non-empty list of parts", f"{where}.content"
        )
    blocks = []
    for index, part in enumerate(content):
        place = f"{where}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        source = "file.file_data" if kind == "file" else "image_url.url"
        try:
            if kind == "text" and isinstance(part.get("text"), str):
                if part["text"].strip():  # Bedrock refuses a blank text block beside an image
                    blocks.append({"text": part["text"]})
            elif kind == "image_url":
                url = part["image_url"].get("url") if isinstance(part.get("image_url"), dict) else None
                media_type, data = _data_url(url, IMAGE_TYPES, source, place)
                blocks.append(attachments.image(IMAGE_TYPES[media_type], data))
            elif kind == "file":
                file = part.get("file") if isinstance(part.get("file"), dict) else {}
                media_type, data = _data_url(file.get("file_data"), DOCUMENT_TYPES, source, place)
                filename = file.get("filename")
                name = safe_name(filename if isinstance(filename, str) else "", attachments.names)
                blocks.append(attachments.document(DOCUMENT_TYPES[media_type], name, data))
            else:
                raise OpenAIRequestError("each part must be a text, an image_url or a file part", place)
        except AttachmentError as exc:
            subject = {"data": source, "format": source, "name": "file.filename"}.get(exc.field)
            raise OpenAIRequestError(
                f"'{subject}' {exc.message}" if subject else exc.message, place
            ) from None
    if lacks_text(blocks):
        message = "a message with a file needs a text part too (Bedrock's rule)"
        raise OpenAIRequestError(message, f"{where}.content")
    return blocks


def _data_url(url: Any, types: dict[str, str], name: str, place: str) -> tuple[str, str]:
    """Split a base64 data: URL into its media type and data; the relay fetches nothing itself."""
    if isinstance(url, str) and url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if media_type in types and encoding == "base64":
            return media_type, data
    kinds = ", ".join(types)
    raise OpenAIRequestError(
        f"'{name}' must be a base64 data: URL of {kinds}; the relay fetches nothing", place
    )


def _plain(content: Any, where: str) -> str:
    """A system, assistant or tool message's content as text: a string, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        return "".join(part["text"] for part in content)
    raise OpenAIRequestError("'content' must be a string or a list of text parts", f"{where}.content")


def _tool_uses(calls: Any, where: str) -> list[dict]:
    """An assistant message's tool_calls as Converse toolUse blocks."""
    if not isinstance(calls, list):
        raise OpenAIRequestError("'tool_calls' must be a list", f"{where}.tool_calls")
    blocks = []
    for index, call in enumerate(calls):
        place = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("id"), str) or not call["id"]:
            raise OpenAIRequestError("each tool call needs an 'id' and a 'function'", place)
        arguments = function.get("arguments") or "{}"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except (ValueError, RecursionError):
                arguments = None
        if not isinstance(arguments, dict):
            raise OpenAIRequestError("'arguments' must be a JSON object", f"{place}.function.arguments")
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise OpenAIRequestError("'name' must be a tool's name", f"{place}.function.name")
        blocks.append({"toolUse": {"toolUseId": call["id"], "name": name, "input": arguments}})
    return blocks


def _messages(raw: Any) -> tuple[list[str], list[dict], bool]:
    """Split system text from the turns, as Converse wants; tell whether any turn uses tools."""
    if not isinstance(raw, list) or not raw:
        raise OpenAIRequestError("'messages' must be a non-empty list", "messages")
    system: list[str] = []
    turns: list[dict] = []
    attachments = Attachments()
    uses_tools = False
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise OpenAIRequestError("each message must be an object", where)
        role = message.get("role")
        if role not in ROLES:
            raise OpenAIRequestError(f"'role' must be one of {', '.join(ROLES)}", f"{where}.role")
        if role in ("system", "developer"):
            system.append(_plain(message.get("content"), where))
            continue
        if role == "user":
            blocks = _blocks(message.get("content"), where, attachments)
        elif role == "tool":
            # A tool's answer goes back to the model in the user's turn, as Converse wants.
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise OpenAIRequestError("a tool message needs its 'tool_call_id'", f"{where}.tool_call_id")
            text = _plain(message.get("content"), where)
            # Bedrock refuses a blank text block: an empty output says so in words.
            output = text if text.strip() else "(no output)"
            blocks = [{"toolResult": {"toolUseId": call_id, "content": [{"text": output}]}}]
            role, uses_tools = "user", True
        else:
            text = _plain(message.get("content"), where)
            blocks = [{"text": text}] if text.strip() else []
            if message.get("tool_calls"):
                blocks += _tool_uses(message["tool_calls"], where)
                uses_tools = True
        if not any("text" not in block or block["text"].strip() for block in blocks):
            raise OpenAIRequestError("'content' must not be empty", f"{where}.content")
        if turns and turns[-1]["role"] == role:
            # Converse wants roles to alternate: consecutive turns of one role become one.
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns or turns[0]["role"] != "user":
        raise OpenAIRequestError("the first message after any system messages must be 'user'", "messages")
    if turns[-1]["role"] != "user":
        raise OpenAIRequestError("the last message must be 'user' or 'tool'", "messages")
    return system, turns, uses_tools


def _tool_config(body: dict, uses_tools: bool) -> dict | None:
    """`tools` and `tool_choice` as Converse's toolConfig."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is None:
        if uses_tools:
            raise OpenAIRequestError("messages use tools, so 'tools' must list them", "tools")
        if choice not in (None, "none"):
            raise OpenAIRequestError("'tool_choice' needs 'tools'", "tool_choice")
        return None
    if not isinstance(tools, list) or not tools:
        raise OpenAIRequestError("'tools' must be a non-empty list", "tools")
    specs = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            message = "each tool must be a function whose 'name' is 1 to 64 letters, digits, _ or -"
            raise OpenAIRequestError(message, f"tools[{index}]")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise OpenAIRequestError("'parameters' must be a JSON Schema object", f"tools[{index}].function")
        spec: dict = {"name": name, "inputSchema": {"json": parameters}}
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise OpenAIRequestError("'description' must be a string", f"tools[{index}].function.description")
        if description:
            spec["description"] = description
        specs.append({"toolSpec": spec})
    config: dict = {"tools": specs}
    names = {spec["toolSpec"]["name"] for spec in specs}
    if choice is None:
        pass  # auto is the default; some models take tools but no toolChoice at all
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        chosen = choice["function"].get("name")
        if chosen not in names:
            raise OpenAIRequestError("'tool_choice' must name one of the 'tools'", "tool_choice")
        config["toolChoice"] = {"tool": {"name": chosen}}
    elif choice == "none":
        # Converse has no "none": with no tool history, leaving the tools out says the same.
        if uses_tools:
            raise OpenAIRequestError("'none' cannot be honoured once messages use tools", "tool_choice")
        return None
    else:
        raise OpenAIRequestError("'tool_choice' must be auto, required, none or a function", "tool_choice")
    return config


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
