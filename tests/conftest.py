"""Shared fixtures: the Bedrock stand-in in this process, and the app served by run.sh."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from standin.scenarios import Scenario
from standin.server import Record, StandInServer
from tests.harness import AppProcess, free_port, start_app, stop_process


@pytest.fixture(scope="session")
def standin() -> Iterator[StandInServer]:
    """A fast stand-in: tests ask for slower or broken streams with a `[standin ...]` tag."""
    server = StandInServer(("127.0.0.1", 0), Scenario(tokens=20, tps=400, ttft=0.02)).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def app(standin: StandInServer) -> Iterator[AppProcess]:
    """The app as Lambda runs it, with short heartbeats and a single Bedrock attempt."""
    # As in Lambda, where LWA's x-amzn-lambda-context header is believed: the deadline tests send it.
    process = start_app(
        standin.url, HEARTBEAT_SECONDS="0.5", BEDROCK_MAX_ATTEMPTS="1", AWS_LAMBDA_FUNCTION_NAME="relay-test"
    )
    yield process
    process.stop()


@pytest.fixture
def client(app: AppProcess) -> Iterator[httpx.Client]:
    """An HTTP client for the app."""
    with httpx.Client(base_url=app.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def browser():
    """Headless system Chromium; test modules that use it skip first when it is missing."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page in a light, 960x720 window; steps time out after 15 s."""
    context = browser.new_context(viewport={"width": 960, "height": 720}, color_scheme="light")
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def wait_for_record(standin: StandInServer, tag: str, outcome: str, timeout: float = 5.0) -> Record:
    """Wait until the stand-in's request with this tag reaches the given outcome."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for record in standin.records:
            if record.scenario["id"] == tag and record.outcome == outcome:
                return record
        time.sleep(0.02)
    seen = [(r.scenario["id"], r.outcome) for r in standin.records if r.scenario["id"] == tag]
    raise AssertionError(f"stand-in request {tag!r} never reached {outcome!r}; saw {seen}")


def wait_until(condition, timeout: float = 10.0) -> bool:
    """Whether the condition comes true within the timeout, asked every 0.2 s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return False


@dataclass
class LocalStore:
    """The local DynamoDB, in a process of its own, and its table."""

    url: str
    table: str
    process: subprocess.Popen

    def client(self, via: str | None = None):
        """A DynamoDB client for the tests' own looks at the table (through `via`, a proxy, if given),
        with dummy credentials and the app's two attempts a call."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "dynamodb",
            endpoint_url=via or self.url,
            config=Config(retries={"mode": "standard", "total_max_attempts": 2}),
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def dynamodb() -> Iterator[LocalStore]:
    """moto's DynamoDB server on loopback, with the streams table made from template.yaml.

    A process of its own, as in ./scripts/dev: moto in this process (the Cognito tests) resets
    its own state, which would take the table with it.
    """
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "standin.dynamodb", "--port", str(port), "--table", "relay-streams"],
            stderr=log,
        )
        end = time.monotonic() + 30
        # Its first line is written once the table exists.
        while not (log.seek(0) or log.read()).startswith("Local DynamoDB on"):
            assert process.poll() is None and time.monotonic() < end, log.read()
            time.sleep(0.05)
        yield LocalStore(f"http://127.0.0.1:{port}", "relay-streams", process)
        stop_process(process)


def store_env(dynamodb) -> dict[str, str]:
    """The settings that point an app at the local store, through the SDK's own endpoint variable."""
    return {"AWS_ENDPOINT_URL_DYNAMODB": dynamodb.url, "STREAMS_TABLE": dynamodb.table}


def caller_keys(*names: str) -> tuple[str, dict[str, dict[str, str]]]:
    """Make an API key per caller: the API_KEY_HASHES setting, and each caller's X-Api-Key header.

    Each name gets a random suffix: tests share one table, and one test's callers must not show up
    in another's.
    """
    keys = {f"{name}-{secrets.token_hex(4)}": secrets.token_urlsafe(32) for name in names}
    hashes = ",".join(f"{name}:{hashlib.sha256(key.encode()).hexdigest()}" for name, key in keys.items())
    return hashes, {name.rsplit("-", 1)[0]: {"X-Api-Key": key} for name, key in keys.items()}
