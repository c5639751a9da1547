"""Metrics in the request log line: each outcome's line checked against the Embedded Metric Format's rules."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from bedrock_relay.logs import JsonLines

from standin.server import StandInServer
from tests.conftest import store_env
from tests.harness import AppProcess, start_app

NDJSON = {"Accept": "application/x-ndjson"}
# CloudWatch's units (the MetricDatum type's), which a MetricDefinition's Unit must be one of.
UNITS = {
    *("Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes"),
    *("Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count"),
    *("Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second"),
    *("Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second"),
    *("Count/Second", "None"),
}


def emf_problems(line: dict, now_ms: int) -> list[str]:
    """Check one log event against the Embedded Metric Format specification; return what breaks it."""
    problems = []
    meta = line.get("_aws")
    if not isinstance(meta, dict) or set(meta) - {"Timestamp", "CloudWatchMetrics", "LogGroupName"}:
        return ["_aws must be an object of Timestamp and CloudWatchMetrics"]
    stamp = meta.get("Timestamp")
    # A number of milliseconds since the epoch, at most 14 days past or 2 hours ahead.
    if type(stamp) is not int or not now_ms - 14 * 86_400_000 <= stamp <= now_ms + 7_200_000:
        problems.append(f"Timestamp {stamp!r} is not a recent epoch time in milliseconds")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return [*problems, "CloudWatchMetrics must be a non-empty array"]
    for directive in directives:
        if set(directive) != {"Namespace", "Dimensions", "Metrics"}:
            problems.append(f"a MetricDirective has members {sorted(directive)}")
            continue
        namespace = directive["Namespace"]
        if not isinstance(namespace, str) or not 1 <= len(namespace) <= 255:
            problems.append("Namespace must be a string of 1 to 255 characters")
        for dimension_set in directive["Dimensions"]:
            if not isinstance(dimension_set, list) or len(dimension_set) > 30:
                problems.append(f"a DimensionSet must be an array of at most 30 keys: {dimension_set!r}")
                continue
            for name in dimension_set:
                value = line.get(name)
                # A dimension's target member must be a string, and CloudWatch takes only non-blank ASCII.
                if (
                    not isinstance(value, str)
                    or not value.strip()
                    or not value.isascii()
                    or len(value) > 1024
                ):
                    problems.append(f"dimension {name!r} has value {value!r}")
        metrics = directive["Metrics"]
        if not isinstance(metrics, list) or len(metrics) > 100:
            problems.append("Metrics must be an array of at most 100 MetricDefinitions")
            continue
        for metric in metrics:
            if set(metric) - {"Name", "Unit", "StorageResolution"} or "Name" not in metric:
                problems.append(f"a MetricDefinition has members {sorted(metric)}")
                continue
            name = metric["Name"]
            if not isinstance(name, str) or not 1 <= len(name) <= 255:
                problems.append(f"metric name {name!r}")
            if "Unit" in metric and metric["Unit"] not in UNITS:
                problems.append(f"metric {name!r} has unit {metric['Unit']!r}")
            value = line.get(name)
            # A metric's target member must be a number (or an array of at most 100 numbers).
            if type(value) not in (int, float):
                problems.append(f"metric {name!r} has value {value!r}")
    return problems


@pytest.fixture(scope="module")
def metrics_app(standin: StandInServer, dynamodb) -> Iterator[AppProcess]:
    process = start_app(
        standin.url,
        **store_env(dynamodb),
        GUARDRAIL_ID="gr-metrics",
        GUARDRAIL_VERSION="1",
        MAX_STREAM_SECONDS="3",
        BEDROCK_MAX_ATTEMPTS="1",
    )
    yield process
    process.stop()


def outcome_of(app: AppProcess, response: httpx.Response) -> dict:
    return app.log_for(response.headers["x-request-id"])


def test_every_outcome_is_a_valid_emf_document_with_its_counts(metrics_app):
    url = f"{metrics_app.url}/chat"
    lines = {}

    def send(name: str, body: dict | str, **headers: str) -> None:
        kwargs = {"json": body} if isinstance(body, dict) else {"content": body}
        response = httpx.post(url, headers={**NDJSON, **headers}, timeout=30, **kwargs)
        lines[name] = outcome_of(metrics_app, response)

    send("complete", {"prompt": "[standin tokens=5] hi"})
    send("error", {"prompt": "[standin tokens=9 stream_error=modelStreamErrorException after=3] hi"})
    send("rejected", {"prompt": ""})
    send("unreadable", "not json")
    send("throttled", {"prompt": "[standin error=ThrottlingException] hi"})
    send("guardrail", {"prompt": "[standin tokens=9 guardrail=output after=2] hi"})
    send("deadline", {"prompt": "[standin tokens=200 tps=20] hi"})
    with httpx.stream("POST", url, json={"prompt": "[standin tokens=400 tps=40] hi"}, headers=NDJSON) as live:
        lines_read = live.iter_lines()
        stream_id = json.loads(next(lines_read))["streamId"]
        httpx.post(f"{url}/{stream_id}/cancel", timeout=10)
        list(lines_read)
    lines["cancelled"] = outcome_of(metrics_app, live)
    openai = httpx.post(
        f"{metrics_app.url}/v1/chat/completions",
        json={
            "model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=30,
    )
    lines["openai"] = outcome_of(metrics_app, openai)
    now_ms = int(time.time() * 1000)
    for name, line in lines.items():
        assert emf_problems(line, now_ms) == [], (name, line)
    expected = {
        "complete": ("chat:ndjson", "complete", {"requests"}),
        "error": ("chat:ndjson", "error", {"requests", "errors"}),
        "rejected": ("chat:ndjson", "rejected", {"requests", "rejected"}),
        "unreadable": ("chat:ndjson", "rejected", {"requests", "rejected"}),
        "throttled": ("chat:ndjson", "rejected", {"requests", "rejected", "throttles"}),
        "guardrail": ("chat:ndjson", "complete", {"requests", "guardrailInterventions"}),
        "deadline": ("chat:ndjson", "deadline", {"requests", "deadlineEnds"}),
        "cancelled": ("chat:ndjson", "cancelled", {"requests", "cancels"}),
        "openai": ("openai:json", "complete", {"requests"}),
    }
    for name, (api, outcome, counted) in expected.items():
        line = lines[name]
        assert (line["api"], line["outcome"]) == (api, outcome), (name, line)
        declared = {metric["Name"] for metric in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        counters = {
            metric
            for metric in declared
            if line[metric] == 1 and metric not in ("inputTokens", "outputTokens")
        }
        assert counters == counted, (name, line)
    # Timings and tokens are declared only where measured: a refusal has neither.
    declared = {m["Name"] for m in lines["complete"]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"ttftMs", "durationMs", "inputTokens", "outputTokens"} <= declared
    declared = {m["Name"] for m in lines["rejected"]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert "ttftMs" not in declared and "outputTokens" not in declared
    assert lines["rejected"]["modelId"] == "-"


def test_a_client_that_leaves_is_counted(metrics_app):
    with httpx.stream(
        "POST", f"{metrics_app.url}/chat", json={"prompt": "[standin tokens=400 tps=20] hi"}, headers=NDJSON
    ) as response:
        next(response.iter_lines())
        request_id = response.headers["x-request-id"]
    # With the store on, the answer is finished for a resume; the line says its client left.
    line = metrics_app.log_for(request_id, timeout=30)
    assert line["clientDisconnects"] == 1 and emf_problems(line, int(time.time() * 1000)) == []


def test_metrics_can_be_turned_off(standin):
    app = start_app(standin.url, METRICS_NAMESPACE="-")
    try:
        response = httpx.post(f"{app.url}/chat", json={"prompt": "[standin tokens=2] hi"}, timeout=30)
        assert "_aws" not in app.log_for(response.headers["x-request-id"])
    finally:
        app.stop()


def test_a_traceback_is_one_json_line_not_many_events():
    try:
        raise RuntimeError("the reader crashed")
    except RuntimeError:
        record = logging.LogRecord(
            "bedrock_relay.pump", logging.ERROR, __file__, 1, "reading failed", None, sys.exc_info()
        )
    line = JsonLines().format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["message"] == "reading failed" and fields["level"] == "ERROR"
    assert (
        fields["traceback"].startswith("Traceback")
        and "RuntimeError: the reader crashed" in fields["traceback"]
    )
