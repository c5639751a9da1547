"""Turns the figures into a table a person reads, a JSON file, and a chart of the latency distributions."""

from __future__ import annotations

import json
from pathlib import Path

from .measure import FORMATS


def rows(figures: dict) -> list[tuple[str, str, str, str]]:
    """Return (figure, value, target, verdict) rows, one per target and the context around it."""
    out: list[tuple[str, str, str, str]] = []

    def add(name: str, value: float, unit: str, target: str = "", met: bool | None = None) -> None:
        verdict = "" if met is None else ("met" if met else "MISSED")
        out.append((name, f"{value:g} {unit}".strip(), target, verdict))

    def note(name: str, text: str) -> None:
        """Add a context row whose value is already formatted."""
        out.append((name, text, "", ""))

    for key, mode in (("latency", "shared machine"), ("latency_realtime", "real-time scheduling")):
        if key not in figures:
            continue
        latency = figures[key]["by_reader"]
        for kind in ("direct", *FORMATS):
            f = latency[kind]
            name = "floor (direct boto3)" if kind == "direct" else kind
            note(
                f"[{mode}] {name}: added p50 / p99 / max",
                f"{f['p50_ms']:g} / {f['p99_ms']:g} / {f['max_ms']:g} ms",
            )
        for kind in FORMATS:
            over = latency[kind]["p99_over_floor_ms"]
            add(f"[{mode}] {kind}: p99 over floor", over, "ms", "<= 1 ms", over <= 1)
    first = figures["first_token"]["by_reader"]
    for kind in FORMATS:
        value = first[kind]["first_byte_overhead_median_ms"]
        add(f"{kind}: first-byte overhead, median", value, "ms", "<= 3 ms", value <= 3)
    note(
        "request to first token, direct / relay sse, median",
        f"{first['direct']['request_to_first_token_median_ms']:g} / "
        f"{first['sse']['request_to_first_token_median_ms']:g} ms",
    )
    through = figures["throughput"]["by_reader"]
    for kind in FORMATS:
        value = through[kind]["ratio_to_direct"]
        add(
            f"{kind}: throughput relay / direct ({through[kind]['tokens_per_s']} vs "
            f"{through['direct']['tokens_per_s']} tok/s)",
            value,
            "",
            ">= 0.8",
            value >= 0.8,
        )
    cold = figures["cold_start"]
    add(
        f"cold start to ready / floor ({cold['spawn_to_ready_median_ms']:g} vs "
        f"{cold['floor_boto3_client_median_ms']:g} ms)",
        cold["ready_ratio_to_floor"],
        "",
        "<= 1.2",
        cold["ready_ratio_to_floor"] <= 1.2,
    )
    add(
        f"spawn to first token / floor ({cold['spawn_to_first_token_median_ms']:g} vs "
        f"{cold['floor_first_token_median_ms']:g} ms)",
        cold["first_token_ratio_to_floor"],
        "",
    )
    start = figures["memory_after_start"]
    add("RSS after start, worker (arbiter + worker)", start["worker_rss_mb"], "MB")
    out[-1] = (
        out[-1][0],
        f"{start['worker_rss_mb']:g} ({start['total_rss_mb']:g}) MB",
        "<= 80 MB",
        "met" if start["total_rss_mb"] <= 80 else "MISSED",
    )
    mem = figures["memory"]
    add(
        f"worker RSS growth over a {mem['tokens']}-token stream",
        mem["worker_rss_growth_mb"],
        "MB",
        "<= 5 MB",
        mem["worker_rss_growth_mb"] <= 5,
    )
    add("worker RSS peak", mem["after_stream"]["worker_peak_mb"], "MB")
    if "stalled_client" in figures:
        stalled = figures["stalled_client"]
        add(
            f"worker RSS growth, {stalled['seconds']:g} s of a client that never reads "
            f"({stalled['worker_rss_before_mb']:g} -> {stalled['worker_rss_max_mb']:g} MB)",
            stalled["worker_rss_growth_mb"],
            "MB",
            "<= 5 MB",
            stalled["worker_rss_growth_mb"] <= 5,
        )
    conc = figures["concurrency"]
    add(
        f"{conc['streams']} streams: lost or reordered tokens",
        conc["tokens_lost_or_reordered"],
        "",
        "0",
        conc["tokens_lost_or_reordered"] == 0,
    )
    add(
        f"{conc['streams']} streams: added p99",
        conc["added"]["p99_ms"],
        "ms",
        "<= 5 ms",
        conc["added"]["p99_ms"] <= 5,
    )
    add(
        f"{conc['streams']} streams: wall / one stream "
        f"({conc['wall_s']:g} vs {conc['one_stream_wall_s']:g} s)",
        conc["wall_ratio"],
        "",
        "<= 1.6",
        conc["wall_ratio"] <= 1.6,
    )
    for key, label in (("store", "store on"), ("every_feature", "every feature on")):
        if key not in figures:
            continue
        section = figures[key]
        by_reader = section["latency"]["by_reader"]
        worst = max(by_reader[kind]["p99_over_floor_ms"] for kind in FORMATS)
        add(
            f"{label}: added p99 over floor, worst format "
            f"({', '.join(str(by_reader[kind]['p99_over_floor_ms']) for kind in FORMATS)})",
            worst,
            "ms",
            "<= 1 ms",
            worst <= 1,
        )
        requests = section["requests"]
        note(
            f"{label}: DynamoDB requests per 1,000 tokens at {requests['tps']:g} tok/s",
            f"{requests['requests_per_1000_tokens']:g} ({requests['requests_per_stream']:g} per "
            f"{requests['tokens_per_stream']}-token stream)",
        )
        if "cold_start" in section:
            cold = section["cold_start"]
            note(
                f"{label}: spawn to ready / to first token, median",
                f"{cold['spawn_to_ready_median_ms']:g} / {cold['spawn_to_first_token_median_ms']:g} ms",
            )
    if "shipped_cold_start" in figures:
        shipped = figures["shipped_cold_start"]
        with_, without = shipped["with_bytecode"], shipped["without_bytecode"]
        note(
            "built function, read-only: spawn to ready with / without its bytecode, min (median)",
            f"{with_['spawn_to_ready_min_ms']:g} ({with_['spawn_to_ready_median_ms']:g}) / "
            f"{without['spawn_to_ready_min_ms']:g} ({without['spawn_to_ready_median_ms']:g}) ms: "
            f"bytecode saves {shipped['bytecode_saves_ms']:g} ms",
        )
    soak = figures["soak"]
    out.append(
        (
            f"soak {soak['minutes']:g} min: every token, in order, clean end",
            f"{'yes' if soak['complete'] else 'NO'} "
            f"({soak['tokens']} tokens, p99 added {soak['added']['p99_ms']:g} ms)",
            "completes",
            "met" if soak["complete"] else "MISSED",
        )
    )
    note(
        "soak: worker RSS first / last / slope",
        f"{soak['worker_rss_first_mb']:g} / {soak['worker_rss_last_mb']:g} MB, "
        f"{soak['worker_rss_slope_mb_per_min']:g} MB/min",
    )
    return out


def table(figures: dict) -> str:
    """Return the rows as an aligned plain-text table."""
    lines = [("figure", "value", "target", ""), *rows(figures)]
    widths = [max(len(row[i]) for row in lines) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in lines
    )


def markdown(figures: dict) -> str:
    """Return the rows as a Markdown table, for the README."""
    lines = ["| figure | value | target | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(figures)]
    return "\n".join(lines)


def write(figures: dict, panels: dict[str, dict[str, list[float]]], out: Path) -> list[Path]:
    """Write bench.json, bench.md and bench.png into out and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.md", out / "bench.png"]
    paths[0].write_text(json.dumps(figures, indent=2) + "\n")
    paths[1].write_text(markdown(figures) + "\n")
    chart(panels, figures, paths[2])
    return paths


def chart(panels: dict[str, dict[str, list[float]]], figures: dict, path: Path) -> None:
    """Plot the distribution (CDF) of added latency per reader, floor included, one panel per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), dpi=110, sharey=True)
    axes = axes if len(panels) > 1 else [axes]
    for ax, (title, samples) in zip(axes, panels.items(), strict=True):
        for name, values in samples.items():
            ordered = sorted(v * 1000 for v in values)
            if not ordered:
                continue
            ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
            ax.step(
                ordered,
                ys,
                where="post",
                label=f"{name} (n={len(ordered)})",
                linewidth=2.4 if name.startswith("direct") else 1.3,
            )
        ax.set_xscale("log")
        # Minor tick labels on a log axis collide; the major ones are enough.
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("added latency per token: arrival - emit (ms, log scale)")
        ax.axhline(0.99, color="grey", linewidth=0.6, linestyle=":")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("fraction of tokens")
    machine = figures["machine"]
    fig.suptitle(
        f"Relay vs direct boto3 at {figures['latency']['tps']:g} tok/s: {machine['cores']} cores, "
        f"{machine['cpu_model']}, Python {machine['python']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
