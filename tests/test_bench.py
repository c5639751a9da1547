"""The bench's own arithmetic: percentiles, slopes, and stamps found in any wire format."""

from __future__ import annotations

import math

import pytest

from bench.against import markdown
from bench.stamps import StampReader, stamp_of
from bench.stats import percentile, slope_per_minute, summarize_ms
from standin.scenarios import stamped


def test_percentile_interpolates_between_ranks_like_numpy():
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(list(range(101)), 99) == pytest.approx(99.0)
    assert math.isnan(percentile([], 50))


def test_summary_reports_milliseconds():
    summary = summarize_ms([0.001, 0.002, 0.003])
    assert summary == {"n": 3, "p50_ms": 2.0, "p99_ms": pytest.approx(2.98), "max_ms": 3.0}


def test_slope_is_per_minute_and_flat_for_constant_values():
    assert slope_per_minute([(0, 50.0), (30, 51.0), (60, 52.0)]) == pytest.approx(2.0)
    assert slope_per_minute([(0, 50.0), (60, 50.0)]) == 0
    assert slope_per_minute([(0, 50.0)]) == 0


def test_stamps_are_found_in_text_sse_and_ndjson_bodies():
    token = stamped(" word", 7, 1234.5)
    for body in (token, f'data: {{"text":"{token}"}}\n\n', f'{{"type":"token","text":"{token}"}}\n'):
        reader = StampReader()
        reader.feed(body.encode(), arrived=1234.75)
        (arrival,) = reader.arrivals
        assert (arrival.index, arrival.emitted, arrival.added) == (7, 1234.5, 0.25)


def test_a_stamp_split_across_reads_counts_once_at_its_completing_read():
    body = (stamped("a", 0, 10.0) + stamped("b", 1, 10.5)).encode()
    reader = StampReader()
    cut = body.index(b"@10.5") + 2
    reader.feed(body[:cut], arrived=11.0)
    reader.feed(body[cut:], arrived=12.0)
    assert [(a.index, a.arrived) for a in reader.arrivals] == [(0, 11.0), (1, 12.0)]
    assert reader.in_order(2)
    assert not reader.in_order(3)


def test_a_delta_without_a_stamp_is_ignored():
    assert stamp_of(" plain", 1.0) is None
    assert stamp_of(stamped(" x", 3, 2.0), 2.5).added == 0.5


def test_the_before_and_after_table_puts_each_version_in_its_column():
    def version(ready: float, growth_to: float) -> dict:
        return {
            "spawn_to_ready_median_ms": ready,
            "throughput_ratio_median": {"text": 1.0, "sse": 0.98, "ndjson": 0.97},
            "concurrency_64_added_p99_ms": [1.5, 2.0],
            "stalled_client": {"seconds": 10, "worker_rss_before_mb": 48.0, "worker_rss_max_mb": growth_to},
        }

    result = {"revision": "abc123", "by_version": {"before": version(300, 86.5), "after": version(302, 48.1)}}
    table = markdown(result).splitlines()
    assert table[0] == "| figure | before (abc123) | after |"
    assert "| spawn to ready, median | 300 ms | 302 ms |" in table
    assert "| worker RSS, 10 s of a client that never reads | 48 -> 86.5 MB | 48 -> 48.1 MB |" in table
