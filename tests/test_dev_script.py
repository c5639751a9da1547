"""`./scripts/dev` starts the stand-in and the app, prints a working curl command, and cleans up."""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import time

import httpx

from tests.harness import ROOT, free_port, offline_env


def test_dev_script_serves_the_printed_curl_command():
    port, standin_port = free_port(), free_port()
    env = offline_env("unused", PORT=str(port), STANDIN_PORT=str(standin_port))
    del env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"]  # the script must point boto3 at its stand-in itself
    process = subprocess.Popen(
        [str(ROOT / "scripts" / "dev")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = ""
        deadline = time.monotonic() + 60
        while "Stop with Ctrl-C" not in output and time.monotonic() < deadline:
            output += process.stdout.readline()
        command = re.search(r"^\s*(curl -N \S+/chat -d .*)$", output, re.MULTILINE)
        assert command, output
        args = shlex.split(command.group(1))
        url, body = args[2], args[4]
        assert url == f"http://127.0.0.1:{port}/chat"
        response = httpx.post(url, content=body, timeout=30)
        assert response.status_code == 200 and len(response.text.split()) > 10
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    for listening in (port, standin_port):
        try:
            httpx.get(f"http://127.0.0.1:{listening}/healthz", timeout=1)
        except httpx.ConnectError:
            continue
        raise AssertionError(f"port {listening} still served after scripts/dev stopped")


def test_dev_script_refuses_a_port_in_use():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = offline_env("unused", PORT=str(port), STANDIN_PORT=str(free_port()))
        done = subprocess.run(
            [str(ROOT / "scripts" / "dev")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 1
    assert f"port {port} is in use" in done.stderr
