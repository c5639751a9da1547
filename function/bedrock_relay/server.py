"""The gunicorn worker: gthread, with the server's own refusals (a bad request line, ...) in JSON."""

from __future__ import annotations

import contextlib
import html
import json
import re
import uuid
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from . import logs
from .formats import error_body
from .validation import shorten

DETAIL_CHARACTERS = 80
CODES = {400: "bad_request", 414: "uri_too_long", 431: "headers_too_large"}
_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ([^\r\n]*)")
_BODY = re.compile(rb"</h1>\s*(.*?)\s*</body>", re.DOTALL)


class _Captured:
    """Takes the HTML error page gunicorn writes, so its status and message can be sent as JSON."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.data += data


class JsonErrorWorker(ThreadWorker):
    """A gthread worker whose refusals before the app (400, 414, 431, ...) are JSON and logged."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        # gunicorn decides the status and message; only the page it writes is replaced.
        captured = _Captured()
        super().handle_error(req, captured, addr, exc)
        status_line = _STATUS.match(captured.data)
        if status_line is None:
            return
        status, reason = int(status_line.group(1)), status_line.group(2).decode("latin-1")
        found = _BODY.search(captured.data)
        detail = html.unescape(found.group(1).decode("latin-1")) if found else ""
        # The detail quotes the client's own bytes (a header, a request line): a short excerpt only.
        message = f"{reason}: {shorten(detail, DETAIL_CHARACTERS)}" if detail else reason
        code = CODES.get(status, "http_error" if status < 500 else "internal_error")
        request_id = str(uuid.uuid4())
        logs.log_request(
            requestId=request_id, status=status, outcome="rejected", errorCode=code, errorMessage=message
        )
        body = json.dumps(error_body(code, message)).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Request-Id: {request_id}\r\n\r\n"
        )
        # A client that has gone needs telling nothing.
        with contextlib.suppress(OSError):
            client.sendall(head.encode("latin-1") + body)
