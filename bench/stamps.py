"""Finds the stand-in's emit stamps in whatever bytes a client receives, in any wire format."""

from __future__ import annotations

import re
from dataclasses import dataclass

from standin.scenarios import STAMP

_STAMP_BYTES = re.compile(STAMP.pattern.encode())


@dataclass(frozen=True, slots=True)
class Arrival:
    """One stamped token: its index in the stream, when the stand-in sent it, when it arrived."""

    index: int
    emitted: float
    arrived: float

    @property
    def added(self) -> float:
        return self.arrived - self.emitted


class StampReader:
    """Collects stamps from a byte stream read in arbitrary pieces; a stamp split across reads counts once."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self._tail = b""

    def feed(self, data: bytes, arrived: float) -> None:
        """Take the next bytes read, all received at `arrived`."""
        buffer = self._tail + data
        end = 0
        for match in _STAMP_BYTES.finditer(buffer):
            self.arrivals.append(Arrival(int(match.group(1)), float(match.group(2)), arrived))
            end = match.end()
        # Keep only a stamp that may still be incomplete.
        start = buffer.rfind(b"<", end)
        self._tail = buffer[start:] if start >= 0 and len(buffer) - start < 64 else b""

    def in_order(self, expected: int) -> bool:
        """Tell whether exactly tokens 0..expected-1 arrived, each once and in order."""
        return [a.index for a in self.arrivals] == list(range(expected))


def stamp_of(text: str, arrived: float) -> Arrival | None:
    """Read the stamp of one delta's text, as a direct boto3 reader sees it."""
    match = STAMP.search(text)
    return Arrival(int(match.group(1)), float(match.group(2)), arrived) if match else None
