"""The bench's own arithmetic: percentiles, slopes, and stamps found in any wire format."""

from __future__ import annotations

import math

import pytest

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
