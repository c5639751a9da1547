"""Checks JWT bearer tokens with PyJWT: keys from the issuer's JWKS, claims as Cognito and OIDC set them."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import jwt

# Asymmetric only: `none` and HS* (which a public key could forge) are refused whatever a token says.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
# An unknown key id fetches the JWKS again at most this often, so made-up ids cannot hammer the issuer.
REFETCH_SECONDS = 30.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_TOKEN_BYTES = 8192


class TokenRejected(Exception):
    """The token is not acceptable; `reason` is a short code, the message says why in words."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class ScopeMissing(TokenRejected):
    """The token is valid but lacks the scope the service requires."""


class IssuerUnavailable(Exception):
    """The issuer's keys cannot be fetched, and no cached key fits the token."""


def fetch_json(url: str) -> Any:
    """GET a JSON document from the issuer."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
        return json.load(response)


class KeySet:
    """The issuer's signing keys by id, fetched on demand and refetched when an unknown id appears."""

    def __init__(
        self,
        issuer: str,
        jwks_url: str = "",
        fetch: Callable[[str], Any] = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.issuer = issuer
        self.jwks_url = jwks_url
        self._fetch = fetch
        self.clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._last_fetch_failed = False
        self._lock = threading.Lock()

    def key(self, kid: str) -> jwt.PyJWK:
        """Return the key with this id, or raise TokenRejected or IssuerUnavailable."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            now = self.clock()
            if kid not in self._keys and (
                self._fetched_at is None or now - self._fetched_at >= REFETCH_SECONDS
            ):
                self._fetched_at = now
                self._refresh()
            key = self._keys.get(kid)
        if key is not None:
            return key
        if self._last_fetch_failed:
            raise IssuerUnavailable("the sign-in issuer's keys cannot be fetched")
        raise TokenRejected("unknown_key_id", "the token is signed with a key the issuer does not publish")

    def _refresh(self) -> None:
        try:
            if not self.jwks_url:
                discovery = self._fetch(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
                self.jwks_url = discovery["jwks_uri"]
            keys = {}
            for entry in self._fetch(self.jwks_url)["keys"]:
                if entry.get("use", "sig") == "sig" and entry.get("kid"):
                    try:
                        keys[entry["kid"]] = jwt.PyJWK(entry)
                    except jwt.PyJWTError:
                        continue  # a key type this service does not accept, such as a symmetric one
        except (OSError, ValueError, KeyError, TypeError):
            self._last_fetch_failed = True
            return
        self._keys = keys
        self._last_fetch_failed = False


class TokenVerifier:
    """Verifies a token's signature and claims, and returns its subject."""

    def __init__(
        self,
        keys: KeySet,
        audiences: tuple[str, ...],
        required_scope: str = "",
        leeway_seconds: float = 30.0,
    ):
        self.keys = keys
        self.audiences = frozenset(audiences)
        self.required_scope = required_scope
        self.leeway = leeway_seconds

    def subject(self, token: str) -> str:
        """Return the token's `sub`, or raise TokenRejected, ScopeMissing or IssuerUnavailable."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRejected("malformed_token", f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("malformed_token", "the token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRejected("bad_algorithm", "the token's algorithm is not an accepted asymmetric one")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenRejected("unknown_key_id", "the token names no key id")
        key = self.keys.key(kid)
        if key.algorithm_name and key.algorithm_name != algorithm:
            raise TokenRejected("bad_algorithm", "the token's algorithm is not its key's")
        claims = self._decode(token, key, algorithm)
        self._check_audience(claims)
        self._check_scope(claims)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenRejected("malformed_token", "the token has no subject")
        return subject

    def _decode(self, token: str, key: jwt.PyJWK, algorithm: str) -> dict:
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                issuer=self.keys.issuer,
                leeway=self.leeway,
                # The audience is checked below: Cognito access tokens carry client_id instead.
                options={"require": ["exp", "iss", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token_expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("token_not_yet_valid", "the token is not valid yet") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("wrong_issuer", "the token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("bad_signature", "the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected("malformed_token", f"the token has no '{exc.claim}' claim") from None
        except jwt.PyJWTError:
            raise TokenRejected("malformed_token", "the token is not a well-formed JWT") from None

    def _check_audience(self, claims: dict) -> None:
        use = claims.get("token_use")
        if use is not None and use not in ("id", "access"):
            raise TokenRejected("wrong_audience", "the token is neither an id nor an access token")
        audience = claims.get("aud")
        if use == "access" or (audience is None and "client_id" in claims):
            accepted = {claims.get("client_id")}
        else:
            accepted = set(audience) if isinstance(audience, list) else {audience}
        if not accepted & self.audiences:
            raise TokenRejected("wrong_audience", "the token was issued for another client")

    def _check_scope(self, claims: dict) -> None:
        if not self.required_scope:
            return
        scopes = claims.get("scp", claims.get("scope", ""))
        granted = set(scopes.split() if isinstance(scopes, str) else scopes or ())
        if self.required_scope not in granted:
            raise ScopeMissing("insufficient_scope", f"the token lacks the scope '{self.required_scope}'")
