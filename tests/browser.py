"""Test helpers for real Chromium: how to launch it, a second origin, and a proxy that cuts chunks."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.harness import ROOT

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Downloaded browsers are not used: Playwright drives the system's Chromium.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING_CHROMIUM = (
    f"Chromium not found at {CHROMIUM}: install it with `sudo apt-get install -y chromium` "
    "(Debian) or point CHROMIUM_PATH at a Chromium or Chrome binary"
)
STATIC = ROOT / "function" / "static"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class SecondOrigin:
    """A plain static server on another port, serving a copy of the page and its files."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="second-origin-"))
        shutil.copytree(STATIC, self.root / "static")
        handler = partial(_QuietHandler, directory=str(self.root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve_page_for(self, chat_url: str) -> None:
        """Serve the page edited to post to `chat_url`."""
        page = (STATIC / "index.html").read_text()
        # The one edit a user makes to host the page elsewhere.
        edited = page.replace('data-chat-url="chat"', f'data-chat-url="{chat_url}"')
        assert edited != page, "index.html no longer has data-chat-url"
        (self.root / "index.html").write_text(edited)

    def stop(self) -> None:
        """Stop serving and remove the copy."""
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.root, ignore_errors=True)


def split_points(data: bytes) -> list[int]:
    """Return where to cut a block: inside the first multi-byte character, and in the middle."""
    points = {len(data) // 2}
    for index, byte in enumerate(data):
        if byte >= 0xC0:  # the first byte of a multi-byte UTF-8 character
            points.add(index + 1)
            break
    return sorted(p for p in points if 0 < p < len(data))


class ChunkCuttingProxy:
    """A TCP proxy to the app that sends each response block in pieces, cut inside characters."""

    def __init__(self, target_port: int, pause: float = 0.02):
        self.target_port = target_port
        self.pause = pause
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sockets: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [downstream, upstream]
            for sock in (downstream, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(downstream, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, downstream, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, cut: bool) -> None:
        try:
            while data := source.recv(65536):
                start = 0
                for point in [*split_points(data), len(data)] if cut else [len(data)]:
                    sink.sendall(data[start:point])
                    start = point
                    if cut and point < len(data):
                        # A pause, so the browser reads each piece on its own.
                        time.sleep(self.pause)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def drop_connections(self) -> None:
        """Cut every open connection at once, as a failing network would."""
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Stop accepting connections."""
        self.listener.close()
