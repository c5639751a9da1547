"""The OpenAPI document matches the code: its routes, its request fields and limits, every error code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from bedrock_relay import bedrock, errors, events, replay, server, validation
from bedrock_relay.app import create_app
from bedrock_relay.openapi import DOCUMENT

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "function" / "bedrock_relay"
DOC = json.loads(DOCUMENT.read_text())
# Where the code names an error code as a literal.
CODE_LITERALS = (
    re.compile(r'(?:TokenRejected|ScopeMissing|Failure)\(\s*"(\w+)"'),
    re.compile(r'(?:AuthError|log_rejected|error_response|Refusal)\(\s*\d+,\s*"(\w+)"'),
    re.compile(r'InvalidRequest\(.*,\s*"(\w+)"\)'),
)


def camel(name: str) -> str:
    """Return a Python name as the API spells it: stream_id is streamId."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def codes_in_code() -> set[str]:
    """Every error code the service can send, gathered from its source and its tables."""
    found = {events.INTERNAL_ERROR, events.DEADLINE, "invalid_request", replay.NOT_RESUMABLE}
    found |= set(errors.HTTP_CODES.values()) | set(server.CODES.values()) | {"http_error"}
    found |= set(bedrock.UPSTREAM_STATUS) | set(bedrock.RETRYABLE_STREAM_ERRORS)
    for path in PACKAGE.glob("*.py"):
        text = path.read_text()
        for pattern in CODE_LITERALS:
            found |= set(pattern.findall(text))
    return found


def documented_codes() -> set[str]:
    components = DOC["components"]
    return set(components["x-error-codes"]) | set(components["x-stream-error-codes"])


def test_every_route_is_documented_and_every_documented_route_exists():
    # Every feature that adds a route on: the store, and per-caller limits (with sign-in).
    config = {"BEDROCK_CLIENT": object(), "DYNAMODB_CLIENT": object(), "streams_table": "t"}
    config |= {"auth_modes": ("api_key",), "api_key_hashes": (("ci", "0" * 64),)}
    app = create_app({**config, "daily_output_tokens_per_caller": 1000})
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", lambda name: f"{{{camel(name.group(1))}}}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method)
        for path, item in DOC["paths"].items()
        for method in item
        if not method.startswith("x-")
    }
    assert routes == documented


def test_the_chat_request_schema_is_the_validator():
    schema = DOC["components"]["schemas"]["ChatRequest"]
    assert set(schema["properties"]) == validation.FIELDS
    assert schema["additionalProperties"] is False
    assert schema["properties"]["stopSequences"]["maxItems"] == validation.MAX_STOP_SEQUENCES


def test_every_error_code_the_code_can_send_is_documented():
    assert codes_in_code() - documented_codes() == set()
    # And nothing is documented that the code cannot send. Bedrock's exceptions the relay has no
    # rule for pass through by name: these two are documented for what they mean.
    assert documented_codes() - codes_in_code() == {"AccessDeniedException", "validationException"}


def test_documented_statuses_match_the_code():
    table = DOC["components"]["x-error-codes"]
    for status, code in {**errors.HTTP_CODES, **server.CODES}.items():
        assert table[code]["status"] == status, code
    for code, status in bedrock.UPSTREAM_STATUS.items():
        assert table[code]["status"] == status, code
    statuses = {
        int(status)
        for item in DOC["paths"].values()
        for method, operation in item.items()
        if not method.startswith("x-")
        for status in operation["responses"]
    }
    for code, entry in table.items():
        # The server's own refusals (414, 431) and 405 come before any route.
        if entry["status"] not in (None, 405, 414, 431):
            assert entry["status"] in statuses, code


def test_the_readme_lists_every_code():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Errors", 1)[1].split("\n## ", 1)[0]
    missing = {code for code in documented_codes() if f"`{code}`" not in section}
    assert missing == set()


@pytest.mark.parametrize("modes", [(), ("api_key",)])
def test_the_served_document_describes_this_deployment(modes):
    config = {"BEDROCK_CLIENT": object(), "allowed_model_ids": ("model-a", "model-b"), "model_id": "model-a"}
    config["max_tokens_limit"] = 1234
    if modes:
        config |= {"auth_modes": modes, "api_key_hashes": (("ci", "0" * 64),)}
    client = create_app(config).test_client()
    response = client.get("/openapi.json")
    assert response.status_code == 200
    served = response.get_json()
    fields = served["components"]["schemas"]["ChatRequest"]["properties"]
    assert fields["modelId"]["enum"] == ["model-a", "model-b"]
    assert fields["maxTokens"]["maximum"] == 1234
    assert served["security"] == ([{"apiKey": []}] if modes else [])
    # The store is off here: its routes are not described.
    assert "/chat/{streamId}" not in served["paths"] and "/chat" in served["paths"]
    assert "/usage" not in served["paths"]
