"""Encodes `application/vnd.amazon.eventstream` frames, the binary format botocore decodes."""

from __future__ import annotations

import json
import struct
import zlib

_STRING = 7  # header value type: string with a u16 length


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack("B", len(raw_name)) + raw_name + struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    )


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """Return one frame: prelude and its CRC, headers, payload, and the message CRC."""
    raw_headers = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, body: dict) -> bytes:
    """Return an event frame such as `contentBlockDelta`, with a JSON payload."""
    return frame(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
    )


def exception(exception_type: str, message: str) -> bytes:
    """Return an in-stream exception frame, which botocore raises as EventStreamError."""
    return frame(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )
