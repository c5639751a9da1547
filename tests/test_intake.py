"""When the event loop may hand a request to a thread: whole, or refusable as it stands."""

from __future__ import annotations

import pytest
from bedrock_relay.intake import MAX_HEAD_BYTES, HeadTooLarge, whole

HEAD = b"POST /chat HTTP/1.1\r\nHost: relay\r\n"
LIMIT = 100


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"", False),
        (b"GET /healthz HTTP/1.1\r\nHost: relay\r\n", False),
        (b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n", True),
        (HEAD + b"Content-Length: 5\r\n\r\nabc", False),
        (HEAD + b"content-length: 5\r\n\r\nabcde", True),
        (HEAD + b"Content-Length: 101\r\n\r\n", True),  # over the limit: refused unread
        (HEAD + b"Content-Length: x\r\n\r\n", True),  # the parser refuses it
        (HEAD + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n", True),  # repeated
        (HEAD + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n", True),  # the body waits for us
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nTrailer: 1\r\n\r\n", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n" + b"X-a: b\r\n" * 8000, False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n", True),  # malformed: 400 at once
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n64\r\n" + b"a" * 90, False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n65\r\n" + b"a" * 101, True),  # past the limit
        # The limit is on the data, not its framing: a body of exactly the limit waits for its end.
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n32\r\n" + b"a" * 50 + b"\r\n32\r\n" + b"a" * 50, False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n32\r\n" + b"a" * 50 + b"\r\n33\r\n" + b"a" * 51, True),
        # Tiny chunks' framing may double what the loop holds (33 chunks, 198 bytes), no more.
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 33, False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 34, True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"1" * 2000, True),  # no size line is this long
    ],
)
def test_whole(request_bytes, expected):
    assert whole(bytearray(request_bytes), LIMIT) is expected


def test_a_head_past_its_limit_is_too_large_whether_or_not_it_ended():
    with pytest.raises(HeadTooLarge):
        whole(HEAD + b"X: " + b"a" * MAX_HEAD_BYTES, LIMIT)
    with pytest.raises(HeadTooLarge):
        whole(HEAD + b"X: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", LIMIT)
    # A chunked body's trailers are header fields too.
    with pytest.raises(HeadTooLarge):
        whole(HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n" + b"X-a: b\r\n" * 9000, LIMIT)


def test_a_chunked_body_walked_as_it_arrives_is_judged_as_if_walked_whole():
    # The event loop keeps `progress` per request, so each read walks only the new chunks.
    body = b"".join(b"%x\r\n%s\r\n" % (size, b"a" * size) for size in (1, 7, 20, 3)) + b"0\r\n\r\n"
    request_bytes = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body
    progress: dict = {}
    for end in range(len(HEAD), len(request_bytes) + 1):
        arrived = bytearray(request_bytes[:end])
        assert whole(arrived, LIMIT, progress) is whole(arrived, LIMIT), end
    assert progress  # it did keep its place
