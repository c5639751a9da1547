"""The client's connection as the server hands it over: seen to close, and writes to it bounded in time."""

from __future__ import annotations

import contextlib
import select
import socket


class Peer:
    """One client socket, watched without reading or writing to it."""

    def __init__(self, sock: socket.socket, stall_seconds: float = float("inf")):
        self._sock = sock
        self._stall_seconds = stall_seconds
        self._timeout = sock.gettimeout()
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)

    @classmethod
    def of(cls, sock: socket.socket | None, stall_seconds: float = float("inf")) -> Peer | None:
        """Wrap the server's socket; None where the server does not expose one (a test client)."""
        return cls(sock, stall_seconds) if isinstance(sock, socket.socket) else None

    def gone(self) -> bool:
        """Tell whether the client closed its connection."""
        # Poll first: with a socket timeout set, recv() waits for data despite MSG_DONTWAIT.
        if not self._poller.poll(0):
            return False
        try:
            return self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def bound_writes(self, seconds: float) -> None:
        """Let a write to a client that stopped reading fail after `seconds` (or the stall limit)."""
        with contextlib.suppress(OSError):
            self._sock.settimeout(max(0.1, min(seconds, self._stall_seconds)))

    def restore(self) -> None:
        """Give the server its socket back as it was, once the response is over."""
        with contextlib.suppress(OSError):
            self._sock.settimeout(self._timeout)
