"""The official openai Node SDK against the running relay: a streamed completion, and an abort."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import wait_for_record
from tests.harness import ROOT

NODE_DIR = ROOT / "tests" / "node"
MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"

MISSING = "node and tests/node/node_modules are needed: ./scripts/test installs them"
if not shutil.which("node") or not (NODE_DIR / "node_modules" / "openai").exists():
    pytest.skip(
        "node and tests/node/node_modules are needed: ./scripts/test installs them", allow_module_level=True
    )


def test_the_node_sdk_streams_and_its_abort_closes_bedrock(app, standin):
    done = subprocess.run(
        ["node", str(NODE_DIR / "stream.mjs"), f"{app.url}/v1", MODEL],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["finish"] == "stop" and seen["words"] == 12 and seen["completionTokens"] == 12
    # The SDK ends the iteration at the abort (this version raises nothing; older ones raised).
    assert seen["abortedChunks"] == 3 and seen.get("abortError") in (None, "AbortError", "APIUserAbortError")
    # Its AbortController closed the connection, and the relay closed Bedrock's.
    record = wait_for_record(standin, "node-abort", "client_closed")
    assert record.tokens_sent < 2000
