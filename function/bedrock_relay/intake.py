"""Whether a request read off the socket is whole, so the event loop may hand it to a thread."""

from __future__ import annotations

# Where the server puts what it knows of a request's wait for a thread, for the app's log line.
INTAKE_KEY = "bedrock_relay.intake"
HEAD_END = b"\r\n\r\n"
# The whole request head (request line and headers). A bearer token is capped at 8 KB; browsers'
# heads are a few KB. Held in memory per connection while it arrives, so kept small.
MAX_HEAD_BYTES = 64 * 1024
# A chunk-size line longer than this is not one (it may carry extensions, but not kilobytes).
MAX_SIZE_LINE = 1024
_WATCHED = (b"content-length", b"transfer-encoding", b"expect")
_HEX = frozenset(b"0123456789abcdefABCDEF")


class HeadTooLarge(Exception):
    """The request head, or a chunked body's trailers, passed MAX_HEAD_BYTES before they ended."""


def whole(buffer: bytes, body_limit: int, progress: dict | None = None) -> bool:
    """Tell whether a thread may take the request now: it is all here, or the app can refuse it as it is.

    `progress`, kept by the caller between calls for one request, lets a chunked body's walk go on
    where it stopped: walked from the start at each read, a body of thousands of chunks costs seconds.
    """
    end = buffer.find(HEAD_END)
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise HeadTooLarge
        return False
    if end > MAX_HEAD_BYTES:
        raise HeadTooLarge
    fields = _fields(bytes(buffer[:end]))
    if fields is None:
        return True  # a repeated framing header: the server's parser refuses it
    body_start = end + len(HEAD_END)
    if fields.get(b"expect", b"").lower() == b"100-continue":
        return True  # the client sends its body only once the server has said 100 Continue
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        return _chunked_whole(buffer, body_start, body_limit, {} if progress is None else progress)
    length = fields.get(b"content-length", b"0")
    if not length.isdigit() or len(length) > 18:
        return True  # the parser refuses it
    # A body over the limit is refused from its Content-Length alone, unread.
    return len(buffer) - body_start >= int(length) or int(length) > body_limit


def _fields(head: bytes) -> dict[bytes, bytes] | None:
    """Return the framing headers of a head by lower-case name, or None if one is repeated."""
    found: dict[bytes, bytes] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name in _WATCHED:
            if name in found:
                return None
            found[name] = value.strip()
    return found


def _chunked_whole(buffer: bytes, start: int, body_limit: int, progress: dict) -> bool:
    """Tell whether a chunked body has ended, is malformed, or is already past the limit.

    The limit is on the body's data, as the app counts it, not on its chunk framing. The framing of
    tiny chunks may at most double what the loop holds: past that, a thread reads the rest.
    """
    position = progress.get("next_chunk", start)
    data = progress.get("data", 0)  # the data of the chunks walked so far
    while True:
        if data > body_limit or position - start > 2 * body_limit:
            return True  # the app reads to one byte over its limit and refuses the body
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return len(buffer) - position > MAX_SIZE_LINE
        size = buffer[position:line_end].split(b";")[0].strip()
        if not size or len(size) > 16 or not set(size) <= _HEX:
            return True  # malformed: the app answers 400 at once
        after = line_end + 2
        length = int(size, 16)
        if length == 0:
            # The last chunk, then trailer lines, ended by an empty line: header fields, bounded as
            # the head's are.
            if buffer.startswith(b"\r\n", after) or buffer.find(HEAD_END, line_end) >= 0:
                return True
            if len(buffer) - after > MAX_HEAD_BYTES:
                raise HeadTooLarge
            return False
        position = after + length + 2
        if position > len(buffer):
            # A chunk still arriving: what has come of its data may already be past the limit.
            return data + min(length, len(buffer) - after) > body_limit
        data += length
        # This chunk is all here: never walked again.
        progress["next_chunk"], progress["data"] = position, data
