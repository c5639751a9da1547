"""`scripts/invoke --diagnose URL`: reads GET /diag/stream and tells whether chunks arrive as sent."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field

import requests

# Chunks that arrive over less than this share of the time they were sent over came in a lump.
LUMP_SHARE = 0.5


@dataclass
class Report:
    """What arrived, and when: from one read of the self-test stream."""

    ttfb_ms: float
    reads: int = 0
    lines: list[tuple[int, float, float]] = field(default_factory=list)  # (seq, sent ms, arrived s)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def gaps_ms(self) -> list[float]:
        """The time between one line's arrival and the next's."""
        arrived = [line[2] for line in self.lines]
        return [round((b - a) * 1000) for a, b in itertools.pairwise(arrived)]

    @property
    def buffered(self) -> bool:
        """True when the lines arrived together although they were sent a second apart."""
        if len(self.lines) < 2:
            return True
        sent_span = (self.lines[-1][1] - self.lines[0][1]) / 1000
        arrived_span = self.lines[-1][2] - self.lines[0][2]
        return arrived_span < LUMP_SHARE * sent_span

    def suspects(self) -> list[str]:
        """Which header or hop likely buffered, from what the response says of its path."""
        headers = {name.lower(): value for name, value in self.headers.items()}
        found = []
        if "content-length" in headers:
            found.append(
                "the response has a Content-Length, which the relay never sends for a stream: "
                "a hop read it whole before passing it on"
            )
        if headers.get("content-encoding"):
            found.append(
                f"the response is compressed ({headers['content-encoding']}), which the relay never does: "
                "a compressing hop waits for whole blocks; turn compression off for this path"
            )
        if "via" in headers:
            found.append(f"it passed through: {headers['via']} (the Via header)")
        if "cloudfront" in headers.get("x-cache", "").lower() or "x-amz-cf-id" in headers:
            found.append("CloudFront is in the path (its x-amz-cf-id or X-Cache header)")
        if not found and self.buffered:
            found.append("no header names the hop; try each hop's own URL in turn to find it")
        return found

    def render(self, url: str) -> str:
        sent_span = (self.lines[-1][1] - self.lines[0][1]) / 1000 if self.lines else 0
        arrived_span = self.lines[-1][2] - self.lines[0][2] if self.lines else 0
        out = [
            f"streaming self-test of {url}",
            f"time to first byte: {self.ttfb_ms:.0f} ms",
            f"{len(self.lines)} lines in {self.reads} reads, sent over {sent_span:.2f} s, "
            f"arrived over {arrived_span:.2f} s",
            f"gaps between lines (ms): {' '.join(str(gap) for gap in self.gaps_ms) or '-'}",
        ]
        if self.buffered:
            out.append("verdict: buffered: the chunks arrived in a lump, not as they were sent")
        else:
            out.append("verdict: streams as sent")
        out += [f"  - {suspect}" for suspect in self.suspects() if self.buffered or "Via" in suspect]
        return "\n".join(out)


def diagnose(url: str, headers: dict[str, str], timeout: float) -> Report:
    """GET the self-test stream and time each line's arrival; raise requests' errors."""
    began = time.monotonic()
    with requests.get(url, headers=headers, stream=True, timeout=(10, timeout)) as response:
        if response.status_code >= 400:
            raise requests.HTTPError(f"HTTP {response.status_code}: {response.text.strip()}")
        report = Report(ttfb_ms=0.0, headers=dict(response.headers))
        pending = b""
        # Each chunk as it arrives (decompressed, should a hop have compressed it).
        for chunk in response.iter_content(chunk_size=None):
            now = time.monotonic()
            if not report.reads:
                report.ttfb_ms = (now - began) * 1000
            report.reads += 1
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = json.loads(raw) if raw.strip() else {}
                if "seq" in line:
                    report.lines.append((line["seq"], line["sentAt"], now))
    return report
