"""Starts the app the way Lambda does, through function/run.sh, on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RUN_SH = ROOT / "function" / "run.sh"

# Dummy credentials and no config files: nothing here may reach AWS.
OFFLINE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# Settings a developer's shell may hold that would change what the tests start.
_DROPPED = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "GUNICORN_CMD_ARGS",
    "LISTEN_HOST",
    "PORT",
)


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env(bedrock_url: str, **overrides: str) -> dict[str, str]:
    """Return an environment that points boto3 at the stand-in with dummy credentials."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED and not k.startswith("AWS_")}
    env.update(OFFLINE_AWS_ENV)
    # run.sh runs `python3`: make it this interpreter, with its installed packages.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = bedrock_url
    env.update(overrides)
    return env


@dataclass
class AppProcess:
    """A running app server and the file its stdout (the request log) goes to."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log_records(self) -> list[dict]:
        """Return every JSON request line the app has logged so far."""
        records = []
        # The piece after the last newline may be a line still being written: it is left for later.
        for line in self.log_path.read_text().split("\n")[:-1]:
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    def log_for(self, request_id: str, timeout: float = 5.0) -> dict:
        """Wait for the log line of one request and return it."""
        return self.wait_for_log(lambda record: record.get("requestId") == request_id, timeout)

    def wait_for_log(self, matches, timeout: float = 5.0) -> dict:
        """Wait for the last log line that matches (a stream's is written once its response ends)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = [record for record in self.log_records() if matches(record)]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError("no such log line")

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        stop_process(self.process)
        self.log_path.unlink(missing_ok=True)


def stop_process(process: subprocess.Popen) -> None:
    """Ask a process to stop, kill it if it will not, and wait for it."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_app(
    bedrock_url: str,
    command: list[str] | None = None,
    cwd: Path | None = None,
    port: int | None = None,
    **env: str,
) -> AppProcess:
    """Start the app through run.sh with the given settings and wait until /healthz answers."""
    port = port or free_port()
    log = Path(tempfile.mkstemp(prefix="app-", suffix=".log")[1])
    process = subprocess.Popen(
        command or [str(RUN_SH)],
        cwd=cwd or ROOT,
        env=offline_env(bedrock_url, PORT=str(port), **env),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    app = AppProcess(f"http://127.0.0.1:{port}", process, log)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{app.url}/healthz", timeout=1).status_code == 200:
                return app
        except httpx.TransportError:
            time.sleep(0.05)
    app.stop()
    raise RuntimeError(f"the app did not become ready:\n{log.read_text()}")
