"""Who is calling: a bearer token or API key, checked before every route that is not public."""

from __future__ import annotations

from flask import Flask, Response, g, request

from .api_keys import ApiKeys
from .errors import error_response, log_rejected
from .settings import Settings

REALM = "bedrock-relay"
# Open whatever the mode: readiness, the page, its files, and what it needs to sign in (static.py).
PUBLIC_ENDPOINTS = frozenset({"healthz", "index", "static_file", "config", "openapi"})


class AuthError(Exception):
    """A request refused for its credentials: the status, a reason code, and RFC 6750's error."""

    def __init__(self, status: int, code: str, message: str, bearer_error: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.bearer_error = bearer_error


class Authenticator:
    """Settles which credential a request carries and whose it is."""

    def __init__(self, settings: Settings):
        self.api_keys = ApiKeys(settings.api_key_hashes) if "api_key" in settings.auth_modes else None
        self.tokens = None
        if "jwt" in settings.auth_modes:
            # Imported only in jwt mode: PyJWT and cryptography take about 80 ms to import.
            from .jwks import KeySet
            from .jwt_tokens import TokenVerifier

            keys = KeySet(settings.jwt_issuer, settings.jwt_jwks_url)
            self.tokens = TokenVerifier(
                keys, settings.jwt_audience, settings.jwt_required_scope, settings.jwt_leeway_seconds
            )

    def identify(self, authorization: str, api_key: str) -> tuple[str, str]:
        """Return (method, principal) for a request's credentials, or raise AuthError."""
        if api_key and self.api_keys is not None:
            return "api_key", self._key_name(api_key)
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthError(401, "missing_credentials", self._missing())
        # A JWT has three dot-separated parts; an API key has none.
        if self.tokens is not None and (credential.count(".") == 2 or self.api_keys is None):
            return "jwt", self._subject(credential)
        if self.api_keys is not None:
            return "api_key", self._key_name(credential)
        raise AuthError(401, "missing_credentials", self._missing())

    def _missing(self) -> str:
        ways = []
        if self.tokens is not None:
            ways.append("Authorization: Bearer <token>")
        if self.api_keys is not None:
            ways.append("Authorization: Bearer <API key> or X-Api-Key: <API key>")
        return f"credentials are required: send {' or '.join(ways)}"

    def _key_name(self, key: str) -> str:
        name = self.api_keys.name_of(key)
        if name is None:
            raise AuthError(
                401, "unknown_api_key", "the API key is not one this service knows", "invalid_token"
            )
        return name

    def _subject(self, token: str) -> str:
        from .jwks import IssuerUnavailable
        from .jwt_tokens import ScopeMissing, TokenRejected

        try:
            return self.tokens.subject(token)
        except ScopeMissing as exc:
            raise AuthError(403, exc.reason, exc.message, "insufficient_scope") from None
        except TokenRejected as exc:
            raise AuthError(401, exc.reason, exc.message, "invalid_token") from None
        except IssuerUnavailable as exc:
            raise AuthError(503, "auth_unavailable", str(exc)) from None


def init_app(app: Flask, settings: Settings) -> None:
    """Require credentials on every route that is not public."""
    authenticator = app.extensions["auth"] = Authenticator(settings)
    app.register_error_handler(AuthError, _refused)

    @app.before_request
    def require_credentials() -> None:
        # CORS preflights carry no credentials, and an unknown path is a 404 either way.
        if request.method == "OPTIONS" or request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
            return
        method, principal = authenticator.identify(
            request.headers.get("Authorization", ""), request.headers.get("X-Api-Key", "")
        )
        g.principal = principal
        g.log_fields = {**g.get("log_fields", {}), "authMethod": method, "principal": principal}


def _refused(exc: AuthError) -> Response:
    log_rejected(exc.status, exc.code, exc.message)
    headers = {}
    if exc.status in (401, 403):
        challenge = f'Bearer realm="{REALM}"'
        if exc.bearer_error:
            description = exc.message.replace("\\", "/").replace('"', "'")
            challenge += f', error="{exc.bearer_error}", error_description="{description}"'
        headers["WWW-Authenticate"] = challenge
    elif exc.status == 503:
        headers["Retry-After"] = "5"
    return error_response(exc.status, exc.code, exc.message, headers)
