"""Each measurement the bench makes, returning plain figures (and the samples the chart needs)."""

from __future__ import annotations

import json
import selectors
import threading
import time
from typing import Any

from . import services
from .clients import OPENAI, RelayStream, direct_stream, prompt, relay_stream, stalled_request
from .stats import median, slope_per_minute, summarize_ms

# The native formats, and the OpenAI-compatible route's chunks, each measured against the floor.
FORMATS = {
    "text": "text/plain",
    "sse": "text/event-stream",
    "ndjson": "application/x-ndjson",
    "openai": OPENAI,
}


def _read(kind: str, app_url: str, client: Any, prompt_text: str, tokens: int, headers: dict | None = None):
    if kind == "direct":
        return direct_stream(client, prompt_text, tokens)
    return relay_stream(app_url, FORMATS[kind], prompt_text, tokens, headers)


def added_latency(
    app_url: str, client: Any, tokens: int, rounds: int, tps: float = 100, headers: dict | None = None
) -> dict:
    """Arrival minus emit per token at a realistic pace, floor and formats interleaved round by round."""
    samples: dict[str, list[float]] = {kind: [] for kind in ("direct", *FORMATS)}
    lost = 0
    for round_ in range(rounds):
        for kind in samples:
            text = prompt(tokens, tps, 0.05, f"r{round_}")
            result = _read(kind, app_url, client, text, tokens, headers)
            lost += not result.complete
            samples[kind].extend(result.added)
    figures = {kind: summarize_ms(values) for kind, values in samples.items()}
    floor = figures["direct"]
    for kind in FORMATS:
        figures[kind]["p50_over_floor_ms"] = round(figures[kind]["p50_ms"] - floor["p50_ms"], 3)
        figures[kind]["p99_over_floor_ms"] = round(figures[kind]["p99_ms"] - floor["p99_ms"], 3)
    return {
        "tps": tps,
        "tokens_per_stream": tokens,
        "rounds": rounds,
        "incomplete_streams": lost,
        "by_reader": figures,
        "samples": samples,
    }


def store_requests(
    app: services.Service, tokens: int, streams: int, tps: float = 100, headers: dict | None = None
) -> dict:
    """DynamoDB requests a stream costs with the store on, per 1,000 tokens, from the app's log lines."""
    lost = 0
    for i in range(streams):
        text = prompt(tokens, tps, 0.05, f"s{i}")
        lost += not relay_stream(app.url, FORMATS["sse"], text, tokens, headers).complete
    time.sleep(0.5)  # each log line is written once its response has ended
    lines = [json.loads(line) for line in app.log_path.read_text().splitlines() if line.startswith("{")]
    kept = [line for line in lines if line.get("storeRequests") is not None][-streams:]
    requests, deltas = sum(line["storeRequests"] for line in kept), sum(line["deltas"] for line in kept)
    return {
        "tps": tps,
        "tokens_per_stream": tokens,
        "streams": len(kept),
        "incomplete_streams": lost,
        "requests_per_stream": round(requests / max(1, len(kept)), 1),
        "requests_per_1000_tokens": round(requests * 1000 / max(1, deltas), 1),
    }


def first_token(app_url: str, client: Any, requests: int) -> dict:
    """First token: its arrival minus its emit (first-byte overhead), and the whole request to it."""
    emit_to_arrival: dict[str, list[float]] = {kind: [] for kind in ("direct", *FORMATS)}
    request_to_token: dict[str, list[float]] = {kind: [] for kind in emit_to_arrival}
    for i in range(requests):
        for kind in emit_to_arrival:
            result = _read(kind, app_url, client, prompt(3, 0, 0, f"f{i}"), 3)
            first = result.arrivals[0]
            emit_to_arrival[kind].append(first.added)
            request_to_token[kind].append(first.arrived - result.sent)
    floor_emit = median(emit_to_arrival["direct"])
    floor_request = median(request_to_token["direct"])
    figures = {}
    for kind in emit_to_arrival:
        figures[kind] = {
            "first_token_added_median_ms": round(median(emit_to_arrival[kind]) * 1000, 3),
            "request_to_first_token_median_ms": round(median(request_to_token[kind]) * 1000, 3),
        }
        if kind != "direct":
            figures[kind]["first_byte_overhead_median_ms"] = round(
                (median(emit_to_arrival[kind]) - floor_emit) * 1000, 3
            )
            figures[kind]["request_overhead_median_ms"] = round(
                (median(request_to_token[kind]) - floor_request) * 1000, 3
            )
    return {"requests": requests, "by_reader": figures}


def throughput(app_url: str, client: Any, tokens: int, repeats: int) -> dict:
    """Tokens per second at the stand-in's full speed, first token to last, relay against direct."""
    rates: dict[str, list[float]] = {kind: [] for kind in ("direct", *FORMATS)}
    lost = 0
    for i in range(repeats):
        for kind in rates:
            result = _read(kind, app_url, client, prompt(tokens, 0, 0, f"t{i}"), tokens)
            lost += not result.complete
            span = result.arrivals[-1].arrived - result.arrivals[0].arrived
            rates[kind].append((len(result.arrivals) - 1) / span)
    direct = median(rates["direct"])
    figures = {kind: {"tokens_per_s": round(median(values))} for kind, values in rates.items()}
    for kind in FORMATS:
        figures[kind]["ratio_to_direct"] = round(median(rates[kind]) / direct, 3)
    return {"tokens_per_stream": tokens, "repeats": repeats, "incomplete_streams": lost, "by_reader": figures}


def cold_start(bedrock_url: str, repeats: int, **env: str) -> dict:
    """Spawn to /healthz and to a first token; the floor is python importing boto3 and building a client."""
    ready, token, floor_ready, floor_token = [], [], [], []
    text = prompt(1, 0, 0, "cold")
    # One unmeasured start of each warms the page cache, as a warm Lambda sandbox image is.
    services.floor_start(bedrock_url, text)
    services.start_app(bedrock_url, **env).stop()
    failed = 0
    headers = services.every_feature_env({})[1] if "API_KEY_HASHES" in env else None
    for _ in range(repeats):
        built, first = services.floor_start(bedrock_url, text)
        floor_ready.append(built)
        floor_token.append(first)
        try:
            app = services.start_app(bedrock_url, **env)
        except RuntimeError:
            # Counted, not hidden: a start that dies is a finding too.
            failed += 1
            continue
        result = relay_stream(app.url, "text/plain", text, 1, headers)
        ready.append(app.ready - app.spawned)
        token.append(result.arrivals[0].arrived - app.spawned)
        app.stop()
    return {
        "repeats": repeats,
        "failed_starts": failed,
        "spawn_to_ready_min_ms": round(min(ready) * 1000, 1),
        "floor_boto3_client_min_ms": round(min(floor_ready) * 1000, 1),
        "spawn_to_ready_median_ms": round(median(ready) * 1000, 1),
        "spawn_to_first_token_median_ms": round(median(token) * 1000, 1),
        "floor_boto3_client_median_ms": round(median(floor_ready) * 1000, 1),
        "floor_first_token_median_ms": round(median(floor_token) * 1000, 1),
        "ready_ratio_to_floor": round(median(ready) / median(floor_ready), 3),
        "first_token_ratio_to_floor": round(median(token) / median(floor_token), 3),
    }


def shipped_cold_start(bedrock_url: str, repeats: int, **env: str) -> dict:
    """The built function, run read-only as on Lambda, with and without its bytecode: starts
    interleaved, so a machine that speeds up or slows down moves both alike."""
    builds = {
        "with_bytecode": services.build_function(True),
        "without_bytecode": services.build_function(False),
    }
    text = prompt(1, 0, 0, "cold")
    ready: dict[str, list[float]] = {name: [] for name in builds}
    token: dict[str, list[float]] = {name: [] for name in builds}
    for run_sh in builds.values():
        services.start_app(bedrock_url, run_sh, **env).stop()  # warms the page cache
    for _ in range(repeats):
        for name, run_sh in builds.items():
            app = services.start_app(bedrock_url, run_sh, **env)
            result = relay_stream(app.url, "text/plain", text, 1)
            ready[name].append(app.ready - app.spawned)
            token[name].append(result.arrivals[0].arrived - app.spawned)
            app.stop()
    figures: dict = {"repeats": repeats}
    for name in builds:
        figures[name] = {
            "spawn_to_ready_min_ms": round(min(ready[name]) * 1000, 1),
            "spawn_to_ready_median_ms": round(median(ready[name]) * 1000, 1),
            "spawn_to_first_token_median_ms": round(median(token[name]) * 1000, 1),
        }
    # By the fastest start of each: the least disturbed by the machine's other work.
    saved = min(ready["without_bytecode"]) - min(ready["with_bytecode"])
    figures["bytecode_saves_ms"] = round(saved * 1000, 1)
    return figures


def memory(app: services.Service, tokens: int) -> dict:
    """Memory before and after a long full-speed stream, sampling the peak while it runs."""
    relay_stream(app.url, FORMATS["sse"], prompt(200, 0, 0, "warm"), 200)
    before = services.app_memory(app)
    sampler = _Sampler(app, 0.05).start()
    result = relay_stream(app.url, FORMATS["sse"], prompt(tokens, 0, 0, "long"), tokens)
    samples = sampler.stop()
    after = services.app_memory(app)
    return {
        "tokens": tokens,
        "complete": result.complete,
        "after_warmup": before,
        "after_stream": after,
        "peak_worker_rss_during_mb": max(s["worker_rss_mb"] for _, s in samples),
        "worker_rss_growth_mb": round(after["worker_rss_mb"] - before["worker_rss_mb"], 1),
    }


def stalled_client(app: services.Service, seconds: float) -> dict:
    """Worker memory while a client asks for a full-speed stream and never reads a byte of it."""
    before = services.app_memory(app)
    sock = stalled_request(app.url, prompt(10_000_000, 0, 0, "stalled"))
    try:
        sampler = _Sampler(app, 0.5).start()
        time.sleep(seconds)
        points = sampler.stop()
    finally:
        sock.close()
    rss = [sample["worker_rss_mb"] for _, sample in points]
    return {
        "seconds": seconds,
        "worker_rss_before_mb": before["worker_rss_mb"],
        "worker_rss_max_mb": max(rss),
        "worker_rss_last_mb": rss[-1],
        "worker_rss_growth_mb": round(max(rss) - before["worker_rss_mb"], 1),
    }


def concurrency(app_url: str, streams: int, tokens: int, tps: float, ttft: float = 0.1) -> dict:
    """Many streams at once in one process: all tokens in order, their added latency, and the wall time."""
    single = relay_stream(app_url, FORMATS["sse"], prompt(tokens, tps, ttft, "one"), tokens)
    one_wall = single.ended - single.sent
    selector = selectors.DefaultSelector()
    started = time.monotonic()
    active = []
    for i in range(streams):
        stream = RelayStream(app_url, FORMATS["sse"], prompt(tokens, tps, ttft, f"c{i}"), tokens)
        selector.register(stream, selectors.EVENT_READ)
        active.append(stream)
    open_count = streams
    while open_count:
        for key, _ in selector.select():
            if not key.fileobj.read():
                selector.unregister(key.fileobj)
                open_count -= 1
    results = [stream.result for stream in active]
    wall = max(r.ended for r in results) - started
    added = [value for r in results for value in r.added]
    return {
        "streams": streams,
        "tokens_per_stream": tokens,
        "tps": tps,
        "streams_complete_in_order": sum(r.complete for r in results),
        "tokens_lost_or_reordered": sum(
            0 if r.complete else tokens - _in_order_prefix(r.arrivals) for r in results
        ),
        "added": summarize_ms(added),
        "one_stream_added": summarize_ms(single.added),
        "one_stream_wall_s": round(one_wall, 3),
        "wall_s": round(wall, 3),
        "wall_ratio": round(wall / one_wall, 3),
        "samples": added,
    }


def _in_order_prefix(arrivals: list) -> int:
    count = 0
    for expected, arrival in enumerate(arrivals):
        if arrival.index != expected:
            break
        count += 1
    return count


def soak(app: services.Service, minutes: float, tps: float = 100) -> dict:
    """One stream at a realistic pace for minutes, sampling the worker's memory.

    It ends 5 s short, so a 15-minute soak fits inside the app's 900 s stream cap
    (MAX_STREAM_SECONDS, Lambda's own limit) instead of being stopped by it.
    """
    tokens = int((minutes * 60 - 5) * tps)
    sampler = _Sampler(app, 5.0).start()
    result = relay_stream(app.url, FORMATS["sse"], prompt(tokens, tps, 0.05, "soak"), tokens)
    samples = sampler.stop()
    points = [(t, s["worker_rss_mb"]) for t, s in samples]
    rss = [value for _, value in points]
    return {
        "minutes": minutes,
        "tokens": tokens,
        "complete": result.complete,
        "added": summarize_ms(result.added),
        "worker_rss_first_mb": rss[0],
        "worker_rss_last_mb": rss[-1],
        "worker_rss_max_mb": max(rss),
        "worker_rss_slope_mb_per_min": round(slope_per_minute(points), 3),
    }


class _Sampler:
    """Samples the app's memory on a thread until stopped."""

    def __init__(self, app: services.Service, every: float):
        self.app, self.every = app, every
        self.samples: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> _Sampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic() - self._started, services.app_memory(self.app)))
            if self._stop.wait(self.every):
                return

    def stop(self) -> list[tuple[float, dict]]:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic() - self._started, services.app_memory(self.app)))
        return self.samples
