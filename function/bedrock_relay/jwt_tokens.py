"""Checks JWT bearer tokens with PyJWT: keys from the issuer's JWKS, claims as Cognito and OIDC set them."""

from __future__ import annotations

from typing import Any

import jwt

from .jwks import EC_ALGORITHMS, RSA_ALGORITHMS, KeySet, SigningKey

ALGORITHMS = RSA_ALGORITHMS | set(EC_ALGORITHMS.values())
MAX_TOKEN_BYTES = 8192


class TokenRejected(Exception):
    """The token is not acceptable; `reason` is a short code, the message says why in words."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class ScopeMissing(TokenRejected):
    """The token is valid but lacks the scope the service requires."""


def _strings(value: Any) -> list[str] | None:
    """Return a claim that may be one string or a list of them as a list; None if it is neither."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


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
        if key is None:
            raise TokenRejected(
                "unknown_key_id", "the token is signed with a key the issuer does not publish"
            )
        if algorithm not in key.algorithms:
            raise TokenRejected("bad_algorithm", "the token's algorithm is not one its key may use")
        claims = self._decode(token, key, algorithm)
        self._check_audience(claims)
        self._check_scope(claims)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenRejected("malformed_token", "the token has no subject")
        return subject

    def _decode(self, token: str, key: SigningKey, algorithm: str) -> dict:
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
        # `aud` when the token has one; a Cognito access token has `client_id` instead.
        audience = _strings(claims["aud"] if "aud" in claims else claims.get("client_id", []))
        if audience is None:
            raise TokenRejected("malformed_token", "the token's audience is not a string or a list of them")
        if not set(audience) & self.audiences:
            raise TokenRejected("wrong_audience", "the token was issued for another client")

    def _check_scope(self, claims: dict) -> None:
        if not self.required_scope:
            return
        scopes = claims.get("scp", claims.get("scope", ""))
        granted = scopes.split() if isinstance(scopes, str) else _strings(scopes)
        if granted is None:
            raise TokenRejected("malformed_token", "the token's scopes are not a string or a list of them")
        if self.required_scope not in granted:
            raise ScopeMissing("insufficient_scope", f"the token lacks the scope '{self.required_scope}'")
