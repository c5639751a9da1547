"""schemathesis fuzzes the running service against its OpenAPI document: no 5xx, answers as documented."""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from standin.server import StandInServer
from tests.conftest import store_env
from tests.harness import AppProcess, start_app

KEY = secrets.token_urlsafe(32)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_app(standin: StandInServer, dynamodb) -> Iterator[AppProcess]:
    """The app with every route (the store on) and sign-in by API key, so the fuzzer meets refusals too."""
    process = start_app(
        standin.url,
        **store_env(dynamodb),
        AUTH_MODE="api_key",
        API_KEY_HASHES="fuzz:" + hashlib.sha256(KEY.encode()).hexdigest(),
        BEDROCK_MAX_ATTEMPTS="1",
        ALLOWED_MODEL_IDS="model-a,model-b",
        MODEL_ID="model-a",
        DIAG_MAX_SECONDS="1",  # the self-test's longer runs are refused, documented, and quick
        # On for GET /usage; high enough that the fuzzer's own streams are never refused.
        MAX_CONCURRENT_STREAMS_PER_CALLER="64",
        DAILY_OUTPUT_TOKENS_PER_CALLER="1000000000",
    )
    yield process
    process.stop()


def test_every_answer_is_as_documented(fuzzed_app):
    # The schema is read from the running service, so the pytest plugin's lazy loading is not
    # needed (and its from_fixture reaches into pytest internals that pytest 9 removed).
    schema = schemathesis.openapi.from_url(f"{fuzzed_app.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every route but the document's own, which schemathesis leaves out.
    assert len(operations) == len([m for item in schema.raw_schema["paths"].values() for m in item]) - 1
    statuses: Counter = Counter()
    # Invalid input only where there is input to break; the GETs have none (but a file name).
    cases = [(op, mode) for op in operations for mode in GenerationMode]
    for operation, mode in cases:

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=100, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            # Half the cases carry the key, so the fuzzer reaches the relay as well as sign-in.
            headers = {"X-Api-Key": KEY} if statuses.total() % 2 == 0 else None
            response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
            statuses[f"{case.operation.label} {case.meta.generation.mode} {response.status_code}"] += 1

        try:
            fuzz()
        except Unsatisfiable:
            # No input breaks the document (a path takes any string, /healthz takes nothing).
            assert mode == "negative", operation.label
    print(dict(sorted(statuses.items())))
    # The relay itself answered, not only sign-in: some chats streamed, some were refused as invalid.
    assert statuses["POST /chat positive 200"] and statuses["POST /chat negative 400"]
    assert statuses["POST /chat positive 401"] and statuses["POST /chat negative 401"]


def test_the_service_is_healthy_after_fuzzing(fuzzed_app):
    assert httpx.get(f"{fuzzed_app.url}/healthz", timeout=5).json()["status"] == "ok"
    assert fuzzed_app.process.poll() is None
    crashes = [r for r in fuzzed_app.log_records() if r.get("outcome") == "internal_error"]
    assert crashes == []
