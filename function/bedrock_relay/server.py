"""The gunicorn worker: gthread, where a thread takes a request only once it has fully arrived."""

from __future__ import annotations

import contextlib
import errno
import html
import json
import re
import selectors
import socket
import threading
import time
import uuid
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn.workers.gthread import TConn, ThreadWorker

# Nothing here imports Flask: gunicorn's arbiter loads this module too, and stays small without it.
from . import logs
from .formats import error_body
from .intake import INTAKE_KEY, MAX_HEAD_BYTES, HeadTooLarge, whole
from .settings import from_env
from .validation import shorten

DETAIL_CHARACTERS = 80
CODES = {400: "bad_request", 408: "request_timeout", 414: "uri_too_long", 431: "headers_too_large"}
# A warning that every thread is busy, at most this often: a burst is one line, not thousands.
SATURATION_WARNING_SECONDS = 10.0
_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ([^\r\n]*)")
_BODY = re.compile(rb"</h1>\s*(.*?)\s*</body>", re.DOTALL)
_HEALTH_CHECK = re.compile(rb"(GET|HEAD) /healthz(\?[^ ]*)? HTTP/1\.[01]\r\n")


class _Captured:
    """Takes the HTML error page gunicorn writes, so its status and message can be sent as JSON."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.data += data


# A gathered request goes to gunicorn's parser this much at a time. Its unreader hands back all it
# holds at each read and takes the rest back, so a whole 6 MB body unread at once was copied again
# for each of its chunks: seconds of CPU for a body sent in kilobyte chunks.
HELD_PIECE = 64 * 1024


def _hand_over(unreader: Any, held: bytes) -> None:
    """Give the parser a gathered request: its start now, the rest as if read from the socket."""
    unreader.unread(held[:HELD_PIECE])
    rest = memoryview(held)[HELD_PIECE:]
    if rest:
        unreader.chunk = _Dispenser(unreader, rest)


def _give_back(unreader: Any) -> None:
    """End a hand-over: bytes still held (a pipelined next request) join the parser's own buffer."""
    dispenser = unreader.__dict__.pop("chunk", None)
    if dispenser is not None and dispenser.rest:
        # There gunicorn sees them, and starts the next request from them instead of waiting on the
        # socket; they come after what the parser took and gave back.
        unreader.unread(unreader.take_buffered() + bytes(dispenser.rest))


class _Dispenser:
    """Stands in for a parser's socket read while gathered bytes last, then hands reads back to it."""

    def __init__(self, unreader: Any, rest: memoryview):
        self.unreader = unreader
        self.rest = rest

    def __call__(self, size_hint: int | None = None) -> bytes:
        if not self.rest:
            self.unreader.__dict__.pop("chunk", None)  # the socket's own read from now on
            return self.unreader.chunk(size_hint)
        size = max(HELD_PIECE, size_hint or 0)
        piece, self.rest = bytes(self.rest[:size]), self.rest[size:]
        return piece


class _Conn(TConn):
    """A connection whose request is gathered in the event loop; in a thread, its reads are bounded."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.buffer = bytearray()
        self.progress: dict = {}  # how far whole() has walked this request's chunked body
        self.deadline = 0.0
        self.ready_at = 0.0

    def init(self) -> None:
        super().init()
        # Reading more in a thread happens only after `Expect: 100-continue`, or for a body the app
        # refuses unread: even then a client that stalls frees the thread when the time is up.
        self.sock.settimeout(max(1.0, self.deadline - time.monotonic()))


def refusal(status: int, reason: str, message: str, **fields: Any) -> bytes:
    """Log a refusal made before the app and return it as a JSON HTTP response."""
    code = CODES.get(status, "http_error" if status < 500 else "internal_error")
    request_id = str(uuid.uuid4())
    outcome = "rejected"
    logs.log_request(
        requestId=request_id, status=status, outcome=outcome, errorCode=code, errorMessage=message, **fields
    )
    body = json.dumps(error_body(code, message)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-Id: {request_id}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class RelayWorker(ThreadWorker):
    """gthread, changed where slow clients could take it down, and with its refusals in JSON.

    Each request is read in the event loop, without a thread, until it is whole or its time is up
    (REQUEST_READ_TIMEOUT_SECONDS); /healthz is answered there too, so it answers while every thread
    streams. Each request's wait for a thread is handed to the app's log line.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = from_env()
        self.read_timeout = settings.request_read_timeout_seconds
        self.body_limit = settings.max_request_bytes
        self.gathering: dict[_Conn, None] = {}  # in arrival order, which is deadline order
        self.counts_lock = threading.Lock()
        self.busy = self.waiting = 0
        self.warned_at = float("-inf")
        self.local = threading.local()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app = self.wsgi

        def with_intake(environ: dict, start_response: Any) -> Any:
            environ[INTAKE_KEY] = getattr(self.local, "intake", None)
            return app(environ, start_response)

        self.wsgi = with_intake

    def accept(self, listener: socket.socket) -> None:
        if self.cfg.is_ssl:
            return super().accept(listener)  # TLS is LWA's and the Function URL's business, not ours
        try:
            sock, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._gather(_Conn(self.cfg, sock, address, listener.getsockname()), b"")

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        if not isinstance(conn, _Conn):
            return super().on_client_socket_readable(conn, client)
        # A kept-alive connection's next request: its time runs from its first byte.
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._gather(conn, b"")

    def enqueue_req(self, conn: TConn) -> None:
        if isinstance(conn, _Conn) and not conn.ready_at:
            # Bytes read ahead behind the last request (pipelined) start the next one.
            self._gather(conn, conn.parser.unreader.take_buffered() if conn.parser else b"")
        else:
            self._submit(conn)

    def _gather(self, conn: _Conn, held: bytes) -> None:
        conn.buffer = bytearray(held)
        conn.progress = {}
        conn.deadline = time.monotonic() + self.read_timeout
        conn.sock.setblocking(False)
        if not self._check(conn):
            self.gathering[conn] = None
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: _Conn, _sock: socket.socket) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)  # the client left before its request was whole
            return
        conn.buffer += data
        try:
            self._check(conn)
        except Exception:
            # The loop serves every connection: a fault in one costs that one, never the worker.
            self.log.exception("Error reading a request")
            self._drop(conn)

    def _check(self, conn: _Conn) -> bool:
        """Hand the request on (or answer it here) once it is whole; tell whether it left the loop."""
        try:
            if not whole(conn.buffer, self.body_limit, conn.progress):
                return False
        except HeadTooLarge:
            message = f"the request's header fields (its head, or trailers) pass {MAX_HEAD_BYTES} bytes"
            self._answer(conn, refusal(431, "Request Header Fields Too Large", message))
            return True
        if _HEALTH_CHECK.match(conn.buffer):
            self._answer(conn, self._health())
            return True
        self._leave(conn)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        _hand_over(conn.parser.unreader, bytes(conn.buffer))
        conn.buffer = bytearray()
        conn.data_ready = True
        conn.ready_at = time.monotonic()
        self._submit(conn)
        return True

    def _submit(self, conn: TConn) -> None:
        """Queue a whole request for a thread, saying so in the log when none is free."""
        with self.counts_lock:
            self.waiting += 1
            saturated = self.busy + self.waiting > self.cfg.threads
            load = self._load()
        now = time.monotonic()
        if saturated and now - self.warned_at >= SATURATION_WARNING_SECONDS:
            self.warned_at = now
            logs.log_event("saturated", **load)
        super().enqueue_req(conn)

    def _load(self) -> dict[str, int]:
        return {"threads": self.cfg.threads, "threadsBusy": self.busy, "requestsWaiting": self.waiting}

    def _health(self) -> bytes:
        # Answered by the loop: the process is up and serving even when every thread is streaming.
        body = json.dumps({"status": "ok", **self._load()}).encode()
        return (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Cache-Control: no-cache\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    def _answer(self, conn: _Conn, response: bytes) -> None:
        """Send a short answer from the loop, without blocking it, and close the connection."""
        with contextlib.suppress(OSError):
            conn.sock.send(response)
            conn.sock.shutdown(socket.SHUT_WR)
        self._drop(conn)

    def _leave(self, conn: _Conn) -> None:
        """Take a connection out of the loop's watch, if it is there."""
        if self.gathering.pop(conn, False) is None:
            self.poller.unregister(conn.sock)

    def _drop(self, conn: _Conn) -> None:
        self._leave(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        # The event loop calls this every second at least: requests out of time are refused here.
        now = time.monotonic()
        for conn in list(self.gathering):
            if conn.deadline > now and self.alive:
                break
            if conn.buffer:
                message = f"the request did not arrive within {self.read_timeout:g} seconds"
                self._answer(conn, refusal(408, "Request Timeout", message, receivedBytes=len(conn.buffer)))
            else:
                self._drop(conn)  # an idle connection that never sent a byte: nobody to answer

    def handle(self, conn: TConn) -> Any:
        picked_at = time.monotonic()
        with self.counts_lock:
            self.waiting -= 1
            self.busy += 1
            load = self._load()
        ready_at = getattr(conn, "ready_at", 0.0) or picked_at
        self.local.intake = {"queueMs": round((picked_at - ready_at) * 1000), **load}
        if isinstance(conn, _Conn):
            conn.ready_at = 0.0  # the next request on this connection is gathered afresh
        try:
            return super().handle(conn)
        finally:
            with self.counts_lock:
                self.busy -= 1
            if isinstance(conn, _Conn) and hasattr(conn.parser, "unreader"):
                _give_back(conn.parser.unreader)

    def handle_request(self, req: Any, conn: TConn) -> bool:
        try:
            return super().handle_request(req, conn)
        except TimeoutError as exc:
            # A write bounded by the relay (a client that stopped reading) is a client that left,
            # to be closed quietly like one, not logged as a server fault.
            raise BrokenPipeError(errno.EPIPE, "the client stopped reading") from exc

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
        # A client that has gone needs telling nothing.
        with contextlib.suppress(OSError):
            client.sendall(refusal(status, reason, message))
