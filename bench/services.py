"""Starts the stand-in and the app as separate processes, and reads their memory from /proc."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness import RUN_SH, free_port, offline_env, stop_process

POLL_SECONDS = 0.005  # LWA polls readiness every 10 ms; half that resolves the figure better


def http_ok(url_host: str, port: int, path: str = "/healthz") -> bool:
    """Send one GET and tell whether it answered 200; False while nothing listens."""
    try:
        with socket.create_connection((url_host, port), timeout=1) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_until(check, process: subprocess.Popen, timeout: float = 30.0) -> float:
    """Poll until check() is true and return the monotonic time it first was."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return time.monotonic()
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args} exited with {process.returncode}")
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"process {process.args} did not become ready in {timeout} s")


@dataclass
class Service:
    """A process started by the bench: its URL, when it was spawned and when it was ready."""

    process: subprocess.Popen
    url: str
    port: int
    spawned: float
    ready: float = 0.0
    log_path: Path | None = None

    def stop(self) -> None:
        """Stop the process and wait for it."""
        stop_process(self.process)


def start_standin() -> Service:
    """Start the Bedrock stand-in in its own process, as ./scripts/dev does."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "standin", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        cwd=RUN_SH.parent.parent,
    )
    service = Service(process, f"http://127.0.0.1:{port}", port, time.monotonic())
    service.ready = wait_until(lambda: _listening(port), process)
    return service


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def start_app(bedrock_url: str, run_sh: Path = RUN_SH, **env: str) -> Service:
    """Start the app through function/run.sh and time spawn to the first 200 from /healthz."""
    port = free_port()
    log = open(tempfile.mkstemp(prefix="bench-app-", suffix=".log")[1], "w")  # noqa: SIM115
    environment = offline_env(bedrock_url, PORT=str(port), **env)
    if run_sh != RUN_SH:
        environment["PYTHONDONTWRITEBYTECODE"] = "1"  # a built function runs read-only, as on Lambda
    spawned = time.monotonic()
    process = subprocess.Popen([str(run_sh)], env=environment, stdout=log, stderr=subprocess.STDOUT)
    service = Service(process, f"http://127.0.0.1:{port}", port, spawned, log_path=Path(log.name))
    service.ready = wait_until(lambda: http_ok("127.0.0.1", port), process)
    return service


# The bench's caller, when sign-in is on: a fixed key, made for this run only.
BENCH_KEY = "bench-" + os.urandom(16).hex()


def every_feature_env(store_env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The settings with every feature on (store, API-key sign-in, per-caller limits, answer cache),
    and the header the bench's requests sign in with."""
    import hashlib

    env = {
        **store_env,
        "AUTH_MODE": "api_key",
        "API_KEY_HASHES": f"bench:{hashlib.sha256(BENCH_KEY.encode()).hexdigest()}",
        # Limits the bench never reaches: what is measured is their cost, not a refusal.
        "MAX_CONCURRENT_STREAMS_PER_CALLER": "1000",
        "DAILY_OUTPUT_TOKENS_PER_CALLER": str(10**12),
        "ANSWER_CACHE_SECONDS": "3600",
    }
    return env, {"X-Api-Key": BENCH_KEY}


def build_function(bytecode: bool) -> Path:
    """Build the function as `sam build` does (function/Makefile) and return its run.sh.

    The bytecode is compiled by this interpreter, standing for the runtime's; the built code is
    run with PYTHONDONTWRITEBYTECODE, as Lambda's read-only /var/task allows no cache.
    """
    out = Path(tempfile.mkdtemp(prefix="bench-build-"))
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    python = sys.executable if bytecode else "/nonexistent/python"
    subprocess.run(
        [
            "make",
            "-s",
            "-f",
            str(RUN_SH.parent / "Makefile"),
            "build-ChatFunction",
            f"ARTIFACTS_DIR={out}",
            f"PYC_PYTHON={python}",
            f"PYTHON_VERSION={version}",
        ],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return out / "run.sh"


def start_local_store() -> tuple[Service, dict[str, str]]:
    """Start moto's DynamoDB and its table, as ./scripts/dev does; return it and the app's settings."""
    import boto3

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "standin.dynamodb", "--port", str(port), "--table", "relay-streams"],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    service = Service(process, url, port, time.monotonic())
    keys = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    client = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", **keys)

    def table_ready() -> bool:
        try:
            return "relay-streams" in client.list_tables()["TableNames"]
        except Exception:
            return False  # not listening yet

    service.ready = wait_until(table_ready, process)
    return service, {"AWS_ENDPOINT_URL_DYNAMODB": url, "STREAMS_TABLE": "relay-streams"}


FLOOR_SCRIPT = """
import sys, time
import boto3
client = boto3.session.Session().client("bedrock-runtime")
print(time.monotonic(), flush=True)
if len(sys.argv) > 1:
    stream = client.converse_stream(
        modelId="m", messages=[{"role": "user", "content": [{"text": sys.argv[1]}]}]
    )["stream"]
    for event in stream:
        if "contentBlockDelta" in event:
            print(time.monotonic(), flush=True)
            break
"""


def floor_start(bedrock_url: str, prompt_text: str) -> tuple[float, float]:
    """Time a Python process that imports boto3 and builds the client, then reads one first token."""
    environment = offline_env(bedrock_url)
    spawned = time.monotonic()
    output = subprocess.run(
        [sys.executable, "-c", FLOOR_SCRIPT, prompt_text],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    built, first_token = (float(value) for value in output[:2])
    return built - spawned, first_token - spawned


def child_pids(pid: int) -> list[int]:
    """Return the direct children of a process (gunicorn's workers)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def memory_kb(pid: int) -> dict[str, int]:
    """Return a process's RSS, its peak RSS (VmHWM) and its PSS, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            values["Pss"] = int(line.split()[1])
    return {"rss_kb": values["VmRSS"], "peak_kb": values["VmHWM"], "pss_kb": values.get("Pss", 0)}


def app_pids(service: Service) -> list[int]:
    """Return gunicorn's arbiter and its workers."""
    return [service.process.pid, *child_pids(service.process.pid)]


def app_memory(service: Service) -> dict:
    """Return the memory of gunicorn's arbiter and its worker, and their total PSS, in MB."""
    arbiter = service.process.pid
    workers = child_pids(arbiter)
    parts = {"arbiter": memory_kb(arbiter), **{f"worker{i}": memory_kb(p) for i, p in enumerate(workers)}}
    worker = parts.get("worker0", {"rss_kb": 0, "peak_kb": 0, "pss_kb": 0})
    return {
        "worker_rss_mb": round(worker["rss_kb"] / 1024, 1),
        "worker_peak_mb": round(worker["peak_kb"] / 1024, 1),
        "arbiter_rss_mb": round(parts["arbiter"]["rss_kb"] / 1024, 1),
        "total_rss_mb": round(sum(p["rss_kb"] for p in parts.values()) / 1024, 1),
        "total_pss_mb": round(sum(p["pss_kb"] for p in parts.values()) / 1024, 1),
    }


def machine() -> dict:
    """Describe the machine the figures come from."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


@contextlib.contextmanager
def realtime(pids: list[int]) -> Iterator[None]:
    """Run every thread of these processes under SCHED_RR, so other tenants' load cannot delay them.

    Used only for paced phases that need little CPU; the threads they start inherit the policy.
    """

    def apply(policy: int, priority: int) -> None:
        for pid in pids:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setscheduler(int(tid), policy, os.sched_param(priority))

    apply(os.SCHED_RR, 10)
    try:
        yield
    finally:
        apply(os.SCHED_OTHER, 0)


def can_use_realtime() -> bool:
    """Tell whether this process may use real-time scheduling (root, or CAP_SYS_NICE)."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    except (OSError, AttributeError):
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True
