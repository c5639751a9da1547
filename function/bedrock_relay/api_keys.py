"""API keys for backend callers: only their SHA-256 hashes are configured; keys compare in constant time."""

from __future__ import annotations

import hashlib
import hmac


def key_hash(key: str) -> str:
    """Return the hash an API_KEY_HASHES entry holds for a key."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """The configured keys, by name."""

    def __init__(self, entries: tuple[tuple[str, str], ...]):
        self._entries = [(name, bytes.fromhex(digest)) for name, digest in entries]

    def name_of(self, key: str) -> str | None:
        """Return the name of the key, or None if no configured key matches."""
        digest = hashlib.sha256(key.encode(errors="surrogateescape")).digest()
        found = None
        # Every entry is compared, each in constant time: the time taken says nothing about the key.
        for name, expected in self._entries:
            if hmac.compare_digest(digest, expected):
                found = name
        return found
