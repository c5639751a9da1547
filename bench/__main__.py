"""Runs the benchmark: `python -m bench [--minutes 2] [--out bench-results] [--quick] [--against REV]`."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

from tests.harness import OFFLINE_AWS_ENV

from . import against, measure, report, services
from .clients import direct_client


def main() -> None:
    """Parse the command line, run every measurement against one stand-in, and write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--minutes", type=float, default=2.0, help="soak length (default 2; 15 for the proof)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="where results go")
    parser.add_argument("--quick", action="store_true", help="a short smoke run; figures are not meaningful")
    parser.add_argument(
        "--against", metavar="REV", help="instead, compare this checkout with a git revision, side by side"
    )
    args = parser.parse_args()
    quick = args.quick
    os.environ.update(OFFLINE_AWS_ENV)
    app_env = {"MAX_TOKENS_LIMIT": "200000"}
    figures: dict = {"machine": services.machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    began = time.monotonic()

    def step(name: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {name}", file=sys.stderr, flush=True)

    # The bench's own collector would pause its readers; floor and relay alike run without it.
    gc.disable()
    if args.against:
        _against(args.against, args.out, quick, app_env, step)
        return
    standin = services.start_standin()
    app = services.start_app(standin.url, **app_env)
    panels: dict[str, dict[str, list[float]]] = {}
    try:
        figures["memory_after_start"] = services.app_memory(app)
        client = direct_client(standin.url)
        step("first token")
        figures["first_token"] = measure.first_token(app.url, client, 5 if quick else 30)
        tokens, rounds = (100, 2) if quick else (300, 4)
        step("added latency at 100 tok/s")
        figures["latency"] = measure.added_latency(app.url, client, tokens, rounds)
        panels["shared machine (normal scheduling)"] = _named(figures["latency"].pop("samples"))
        if services.can_use_realtime():
            step("added latency at 100 tok/s, real-time scheduling")
            with services.realtime([os.getpid(), standin.process.pid, *services.app_pids(app)]):
                figures["latency_realtime"] = measure.added_latency(app.url, client, tokens, rounds)
            panels["real-time scheduling (other load cannot preempt)"] = _named(
                figures["latency_realtime"].pop("samples")
            )
        step("throughput at full speed")
        figures["throughput"] = measure.throughput(
            app.url, client, 5000 if quick else 30000, 1 if quick else 3
        )
        step("memory over a 100k-token stream")
        figures["memory"] = measure.memory(app, 10000 if quick else 100000)
        step("a client that never reads")
        figures["stalled_client"] = measure.stalled_client(app, 3 if quick else 10)
        step("64 concurrent streams at 50 tok/s")
        figures["concurrency"] = measure.concurrency(app.url, 64, 100 if quick else 500, 50)
        panels["shared machine (normal scheduling)"]["64 concurrent, sse"] = figures["concurrency"].pop(
            "samples"
        )
        step(f"soak, {args.minutes:g} min")
        figures["soak"] = measure.soak(app, 0.1 if quick else args.minutes)
    finally:
        app.stop()
    store, store_env = services.start_local_store()
    store_app = services.start_app(standin.url, **app_env, **store_env)
    try:
        step("store on: added latency at 100 tok/s, and DynamoDB requests per 1,000 tokens")
        tokens, rounds = (100, 1) if quick else (300, 4)
        latency = measure.added_latency(store_app.url, client, tokens, rounds)
        latency.pop("samples")
        figures["store"] = {
            "latency": latency,
            "requests": measure.store_requests(store_app, 1000, 2 if quick else 5),
        }
    finally:
        store_app.stop()
    every_env, headers = services.every_feature_env(store_env)
    every_app = services.start_app(standin.url, **app_env, **every_env)
    try:
        step("every feature on (store, sign-in, per-caller limits, answer cache): latency and requests")
        tokens, rounds = (100, 1) if quick else (300, 4)
        latency = measure.added_latency(every_app.url, client, tokens, rounds, headers=headers)
        latency.pop("samples")
        figures["every_feature"] = {
            "latency": latency,
            "requests": measure.store_requests(every_app, 1000, 2 if quick else 5, headers=headers),
        }
    finally:
        every_app.stop()
    try:
        step("cold start")
        figures["cold_start"] = measure.cold_start(standin.url, 2 if quick else 9, **app_env)
        step("cold start, store on")
        store_cold = measure.cold_start(standin.url, 2 if quick else 5, **app_env, **store_env)
        figures["store"]["cold_start"] = store_cold
        step("cold start, every feature on")
        every_cold = measure.cold_start(standin.url, 2 if quick else 5, **app_env, **every_env)
        figures["every_feature"]["cold_start"] = every_cold
        step("cold start as shipped: the built function, read-only, with and without its bytecode")
        figures["shipped_cold_start"] = measure.shipped_cold_start(standin.url, 2 if quick else 15, **app_env)
    finally:
        standin.stop()
        store.stop()
    figures["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["duration_s"] = round(time.monotonic() - began, 1)
    step("done")
    print(report.table(figures))
    for path in report.write(figures, panels, args.out):
        print(f"wrote {path}", file=sys.stderr)


def _against(revision: str, out: Path, quick: bool, app_env: dict, step) -> None:
    standin = services.start_standin()
    try:
        step(f"this checkout against {revision}")
        result = against.compare(revision, standin.url, direct_client(standin.url), quick, **app_env)
    finally:
        standin.stop()
    step("done")
    table = against.markdown(result)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "against.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "against.md").write_text(table + "\n")
    print(f"wrote {out / 'against.json'} and {out / 'against.md'}", file=sys.stderr)


def _named(samples: dict[str, list[float]]) -> dict[str, list[float]]:
    return {
        ("direct boto3 (floor)" if kind == "direct" else kind): values for kind, values in samples.items()
    }


if __name__ == "__main__":
    main()
