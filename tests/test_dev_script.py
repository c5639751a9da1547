"""`./scripts/dev` starts the stand-in and the app, prints a working curl command, and cleans up."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time

import httpx
import pytest

from tests.harness import ROOT, free_port, offline_env


def run_dev(*flags: str) -> tuple[subprocess.Popen, str, list[int]]:
    """Start ./scripts/dev on free ports and return it with what it printed up to "Stop with Ctrl-C"."""
    ports = [free_port(), free_port(), free_port(), free_port()]
    env = offline_env(
        "unused",
        PORT=str(ports[0]),
        STANDIN_PORT=str(ports[1]),
        OIDC_PORT=str(ports[2]),
        DYNAMODB_PORT=str(ports[3]),
    )
    del env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"]  # the script must point boto3 at its stand-in itself
    process = subprocess.Popen(
        [str(ROOT / "scripts" / "dev"), *flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own process group, as a terminal gives it: Ctrl-C reaches the whole group.
        start_new_session=True,
    )
    output = ""
    deadline = time.monotonic() + 90
    while "Stop with Ctrl-C" not in output and time.monotonic() < deadline:
        output += process.stdout.readline()
    return process, output, ports


def stop_dev(process: subprocess.Popen, ports: list[int]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)
    for listening in ports:
        try:
            httpx.get(f"http://127.0.0.1:{listening}/healthz", timeout=1)
        except httpx.ConnectError:
            continue
        raise AssertionError(f"port {listening} still served after scripts/dev stopped")


def printed_curl(output: str) -> list[str]:
    command = re.search(r"^\s*(curl -N \S+/chat (-H .*)?-d .*)$", output, re.MULTILINE)
    assert command, output
    return shlex.split(command.group(1))


def test_dev_script_serves_the_printed_curl_command_with_sign_in_on():
    process, output, ports = run_dev()
    try:
        key = re.search(r"^\s*export RELAY_API_KEY=(\S+)$", output, re.MULTILINE).group(1)
        args = printed_curl(output)
        url, body = args[2], args[-1]
        assert url == f"http://127.0.0.1:{ports[0]}/chat"
        assert args[3:5] == ["-H", "X-Api-Key: $RELAY_API_KEY"]
        response = httpx.post(url, content=body, headers={"X-Api-Key": key}, timeout=30)
        assert response.status_code == 200 and len(response.text.split()) > 10
        # As deployed: without the key, refused; the page's local OpenID provider is up.
        assert httpx.post(url, content=body, timeout=30).status_code == 401
        config = httpx.get(f"http://127.0.0.1:{ports[0]}/config").json()["auth"]
        assert config["issuer"] == f"http://127.0.0.1:{ports[2]}"
        assert httpx.get(config["issuer"] + "/.well-known/openid-configuration").status_code == 200
        # The local store is on: the answer can be read again by its stream id.
        stream_id = response.headers["x-stream-id"]
        replay = httpx.get(f"{url}/{stream_id}", headers={"X-Api-Key": key}, timeout=30)
        assert replay.status_code == 200 and replay.text == response.text
        # Per-caller limits are on too, and the printed command reports what that answer spent.
        usage = re.search(r"^\s*curl (\S+/usage) ", output, re.MULTILINE).group(1)
        counted = httpx.get(usage, headers={"X-Api-Key": key}, timeout=10).json()
        assert counted["outputTokens"] == len(response.text.split())
        assert counted["limits"] == {"concurrentStreams": 8, "dailyOutputTokens": 1_000_000}
    finally:
        stop_dev(process, ports)


def test_dev_script_without_auth_serves_the_plain_curl_command():
    process, output, ports = run_dev("--no-auth")
    try:
        args = printed_curl(output)
        response = httpx.post(args[2], content=args[-1], timeout=30)
        assert response.status_code == 200 and len(response.text.split()) > 10
    finally:
        stop_dev(process, [ports[0], ports[1], ports[3]])


def test_dev_script_without_the_store_streams_as_before():
    process, output, ports = run_dev("--no-auth", "--no-store")
    try:
        args = printed_curl(output)
        response = httpx.post(args[2], content=args[-1], timeout=30)
        assert response.status_code == 200 and "x-stream-id" not in response.headers
    finally:
        stop_dev(process, ports[:2])


def test_dev_script_refuses_a_port_in_use():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = offline_env("unused", PORT=str(port), STANDIN_PORT=str(free_port()))
        done = subprocess.run(
            [str(ROOT / "scripts" / "dev")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 1
    assert f"port {port} is in use" in done.stderr


def test_ctrl_c_stops_everything_without_an_error():
    process, _, ports = run_dev("--no-auth")
    os.killpg(process.pid, signal.SIGINT)
    rest = process.stdout.read()
    process.wait(timeout=15)
    assert "error" not in rest, rest
    for listening in [ports[0], ports[1], ports[3]]:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{listening}/healthz", timeout=1)
