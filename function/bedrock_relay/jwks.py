"""The issuer's signing keys: found by OIDC discovery, fetched within bounds, cached by key id."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from .settings import https_url

# Asymmetric only: `none` and HS* (which a public key could forge) are never accepted.
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
# An unknown key id fetches the keys again at most this often, so made-up ids cannot hammer the
# issuer; after a failed fetch, sooner, so a blip at a cold start does not lock sign-in out for long.
REFETCH_SECONDS = 30.0
RETRY_SECONDS = 2.0
FETCH_SECONDS = 5.0  # for the whole of one fetch, discovery included
MAX_DOCUMENT_BYTES = 1 << 20


class IssuerUnavailable(Exception):
    """The issuer's keys cannot be fetched, and no cached key fits the token."""


@dataclass(frozen=True)
class SigningKey:
    """A published public key and the algorithms it may verify."""

    key: Any
    algorithms: frozenset[str]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every redirect into an error: it could lead off the issuer, or down to plain http."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def fetch_json(url: str, deadline: float) -> Any:
    """GET a JSON document of at most 1 MB from an https (or loopback) URL, before the deadline."""
    https_url(url)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with _opener.open(request, timeout=max(0.1, min(2.0, deadline - time.monotonic()))) as response:
        body = bytearray()
        while chunk := response.read(65536):
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise ValueError("the document is larger than 1 MB")
            if time.monotonic() > deadline:
                raise TimeoutError("the issuer is too slow")
    return json.loads(body)


def signing_key(entry: dict) -> SigningKey | None:
    """Return the key a JWKS entry publishes for signatures, or None if this service cannot use it."""
    if entry.get("use", "sig") != "sig" or not entry.get("kid"):
        return None
    kty, declared = entry.get("kty"), entry.get("alg")
    allowed = (
        RSA_ALGORITHMS if kty == "RSA" else {EC_ALGORITHMS.get(entry.get("crv"))} if kty == "EC" else set()
    )
    algorithms = frozenset(allowed & {declared} if declared else allowed) - {None}
    if not algorithms:
        return None
    try:
        return SigningKey(jwt.PyJWK(entry).key, algorithms)
    except jwt.PyJWTError:
        return None


class KeySet:
    """The issuer's signing keys by id, fetched on demand and again when an unknown id appears."""

    def __init__(
        self,
        issuer: str,
        jwks_url: str = "",
        fetch: Callable[[str, float], Any] = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.issuer = issuer
        self.jwks_url = jwks_url
        self._fetch = fetch
        self.clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._last_fetch_failed = False
        self._lock = threading.Lock()

    def key(self, kid: str) -> SigningKey | None:
        """Return the key with this id, None if the issuer does not publish it, or raise IssuerUnavailable."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        # One fetch at a time; others wait for it, but never longer than a fetch may take.
        if not self._lock.acquire(timeout=FETCH_SECONDS):
            raise IssuerUnavailable("the sign-in issuer is slow to answer")
        try:
            if kid not in self._keys and self._may_fetch():
                self._refresh()
            key = self._keys.get(kid)
        finally:
            self._lock.release()
        if key is None and self._last_fetch_failed:
            raise IssuerUnavailable("the sign-in issuer's keys cannot be fetched")
        return key

    def _may_fetch(self) -> bool:
        now = self.clock()
        wait = RETRY_SECONDS if self._last_fetch_failed else REFETCH_SECONDS
        if self._fetched_at is not None and now - self._fetched_at < wait:
            return False
        self._fetched_at = now
        return True

    def _refresh(self) -> None:
        deadline = time.monotonic() + FETCH_SECONDS
        try:
            if not self.jwks_url:
                discovery = self._fetch(
                    self.issuer.rstrip("/") + "/.well-known/openid-configuration", deadline
                )
                # OIDC Discovery 4.3: the document must name the very issuer it was fetched for.
                if discovery.get("issuer") != self.issuer:
                    raise ValueError("the discovery document names another issuer")
                self.jwks_url = discovery["jwks_uri"]
            entries = self._fetch(self.jwks_url, deadline)["keys"]
            if not isinstance(entries, list):
                raise TypeError("the JWKS `keys` is not a list")
            keys = {
                entry["kid"]: key
                for entry in entries
                if isinstance(entry, dict) and (key := signing_key(entry))
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._last_fetch_failed = True
            return
        self._keys = keys
        self._last_fetch_failed = False
