"""Shared fixtures: the Bedrock stand-in in this process, and the app served by run.sh."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from standin.scenarios import Scenario
from standin.server import Record, StandInServer
from tests.harness import AppProcess, start_app


@pytest.fixture(scope="session")
def standin() -> Iterator[StandInServer]:
    """A fast stand-in: tests ask for slower or broken streams with a `[standin ...]` tag."""
    server = StandInServer(("127.0.0.1", 0), Scenario(tokens=20, tps=400, ttft=0.02)).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def app(standin: StandInServer) -> Iterator[AppProcess]:
    """The app as Lambda runs it, with short heartbeats and a single Bedrock attempt."""
    process = start_app(standin.url, HEARTBEAT_SECONDS="0.5", BEDROCK_MAX_ATTEMPTS="1")
    yield process
    process.stop()


@pytest.fixture
def client(app: AppProcess) -> Iterator[httpx.Client]:
    """An HTTP client for the app."""
    with httpx.Client(base_url=app.url, timeout=30) as http:
        yield http


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
