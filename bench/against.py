"""Before and after: this checkout's relay against another git revision's, side by side on one machine."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.harness import ROOT

from . import measure, services
from .stats import median


@contextlib.contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """Check the revision out into a temporary git worktree and yield its run.sh."""
    with tempfile.TemporaryDirectory(prefix="bench-against-") as parent:
        tree = Path(parent) / "tree"
        git = ["git", "-C", str(ROOT)]
        subprocess.run([*git, "worktree", "add", "--detach", "--quiet", str(tree), revision], check=True)
        try:
            yield tree / "function" / "run.sh"
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=True)


def compare(revision: str, bedrock_url: str, client: Any, quick: bool, **env: str) -> dict:
    """Measure both relays in alternation, so the machine's load lands on both alike."""
    rounds = 2 if quick else 6
    with checkout(revision) as before_sh:
        runs = {"before": before_sh, "after": services.RUN_SH}
        ready: dict[str, list[float]] = {name: [] for name in runs}
        for i in range(4 if quick else 20):
            for name in runs if i % 2 == 0 else reversed(list(runs)):
                app = services.start_app(bedrock_url, runs[name], **env)
                ready[name].append(app.ready - app.spawned)
                app.stop()
        apps = {name: services.start_app(bedrock_url, run_sh, **env) for name, run_sh in runs.items()}
        try:
            through: dict[str, dict[str, list[float]]] = {name: {} for name in runs}
            burst: dict[str, list[float]] = {name: [] for name in runs}
            for i in range(rounds):
                for name, app in apps.items() if i % 2 == 0 else reversed(list(apps.items())):
                    figures = measure.throughput(app.url, client, 5000 if quick else 30000, 1)["by_reader"]
                    for kind in measure.FORMATS:
                        through[name].setdefault(kind, []).append(figures[kind]["ratio_to_direct"])
                    many = measure.concurrency(app.url, 64, 100 if quick else 500, 50)
                    burst[name].append(many["added"]["p99_ms"])
            stalled = {name: measure.stalled_client(app, 3 if quick else 10) for name, app in apps.items()}
        finally:
            for app in apps.values():
                app.stop()
    return {
        "revision": revision,
        "rounds": rounds,
        "by_version": {
            name: {
                "spawn_to_ready_median_ms": round(median(ready[name]) * 1000, 1),
                "throughput_ratio_median": {k: round(median(v), 3) for k, v in through[name].items()},
                "concurrency_64_added_p99_ms": burst[name],
                "stalled_client": stalled[name],
            }
            for name in runs
        },
    }


def rows(result: dict) -> list[tuple[str, str, str]]:
    """Return (figure, before, after) rows for the table."""
    before, after = result["by_version"]["before"], result["by_version"]["after"]

    def both(pick) -> tuple[str, str]:
        return pick(before), pick(after)

    def ratios(v: dict) -> str:
        return ", ".join(f"{x:g}" for x in v["throughput_ratio_median"].values())

    def growth(v: dict) -> str:
        stalled = v["stalled_client"]
        return f"{stalled['worker_rss_before_mb']:g} -> {stalled['worker_rss_max_mb']:g} MB"

    return [
        ("spawn to ready, median", *both(lambda v: f"{v['spawn_to_ready_median_ms']:g} ms")),
        (f"throughput relay / direct, median ({', '.join(measure.FORMATS)})", *both(ratios)),
        (
            "64 streams: added p99 per round",
            *both(lambda v: ", ".join(f"{x:g}" for x in v["concurrency_64_added_p99_ms"]) + " ms"),
        ),
        (
            f"worker RSS, {before['stalled_client']['seconds']:g} s of a client that never reads",
            *both(growth),
        ),
    ]


def markdown(result: dict) -> str:
    """Return the comparison as a Markdown table."""
    lines = [f"| figure | before ({result['revision']}) | after |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(result)]
    return "\n".join(lines)
