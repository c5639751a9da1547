"""The service's settings: every environment variable it reads, each declared once, read in one place."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

DEFAULT_MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


class SettingsError(ValueError):
    """A setting from the environment has a value the service cannot use."""


def _text(raw: str) -> str:
    return raw


def _names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    return parse


def _whole(unit: str, zero: str) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be a whole number{unit}") from None
        if value < 0:
            raise ValueError(f"must be 0 ({zero}) or more")
        return value

    return parse


_limit = _whole("", "no limit")


def _port(raw: str) -> int:
    value = _positive(int)(raw)
    if value > 65535:
        raise ValueError("must be a port number, 1 to 65535")
    return value


def _leeway(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number") from None
    if not 0 <= value <= 300:
        raise ValueError("must be between 0 and 300 seconds")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in allowed:
            raise ValueError(f"must be {' or '.join(allowed)}")
        return raw.lower()

    return parse


def _flag(raw: str) -> bool:
    if raw.lower() not in ("true", "false", "enabled", "disabled", "1", "0"):
        raise ValueError("must be true or false")
    return raw.lower() in ("true", "enabled", "1")


def https_url(raw: str) -> str:
    """An issuer or JWKS address: https, or http only on loopback (a local issuer for tests)."""
    parts = urlsplit(raw)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise ValueError("must be an https:// URL")
    # Kept as written: an issuer is compared with the token's `iss` exactly, trailing slash and all.
    return raw


AUTH_MODES = ("jwt", "api_key")


def _auth_modes(raw: str) -> tuple[str, ...]:
    modes = _names(raw.lower())
    if modes == ("none",):
        return ()
    if not modes or any(mode not in AUTH_MODES for mode in modes):
        raise ValueError("must be none, jwt, api_key or jwt,api_key")
    return tuple(dict.fromkeys(modes))


_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def _key_hashes(raw: str) -> tuple[tuple[str, str], ...]:
    entries = []
    for entry in _names(raw):
        name, _, digest = entry.partition(":")
        valid_name = 0 < len(name) <= 64 and set(name) <= _NAME_CHARACTERS
        if not (valid_name and len(digest) == 64 and set(digest.lower()) <= set("0123456789abcdef")):
            # Never echo the entry: a key pasted here by mistake must not reach a log.
            raise ValueError("must be comma-separated NAME:SHA256HEX entries (see scripts/new-api-key)")
        entries.append((name, digest.lower()))
    names = [name for name, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError("names each key once")
    return tuple(entries)


def setting(
    env: str | tuple[str, ...], default: Any, parse: Callable[[str], Any], secret: bool = False
) -> Any:
    """Declare a setting: its environment variable (the first one set wins), default and parser."""
    names = (env,) if isinstance(env, str) else env
    return field(default=default, metadata={"env": names, "parse": parse, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Everything the service can be configured with, with its defaults."""

    model_id: str = setting("MODEL_ID", DEFAULT_MODEL_ID, _text)
    allowed_model_ids: tuple[str, ...] = setting("ALLOWED_MODEL_IDS", (), _names)
    max_tokens_limit: int = setting("MAX_TOKENS_LIMIT", 8192, _positive(int))
    # Room for attachments, within the 6 MB (6,291,456 bytes) a Function URL takes: the rest is
    # the event's own envelope and headers.
    max_request_bytes: int = setting("MAX_REQUEST_BYTES", 6_000_000, _positive(int))
    heartbeat_seconds: float = setting("HEARTBEAT_SECONDS", 15.0, _positive(float))
    deadline_margin_seconds: float = setting("DEADLINE_MARGIN_SECONDS", 5.0, _positive(float))
    max_stream_seconds: float = setting("MAX_STREAM_SECONDS", 900.0, _positive(float))
    # Bedrock may pause between bytes while a model thinks; the stream's own
    # deadline, not the socket, should end a long stream.
    bedrock_read_timeout_seconds: float = setting("BEDROCK_READ_TIMEOUT_SECONDS", 900.0, _positive(float))
    bedrock_connect_timeout_seconds: float = setting(
        "BEDROCK_CONNECT_TIMEOUT_SECONDS", 10.0, _positive(float)
    )
    bedrock_max_attempts: int = setting("BEDROCK_MAX_ATTEMPTS", 3, _positive(int))
    # The whole request, head and body, must arrive within this; meanwhile it holds no thread.
    request_read_timeout_seconds: float = setting("REQUEST_READ_TIMEOUT_SECONDS", 30.0, _positive(float))
    # A client that stops reading for this long is treated as gone, freeing its thread.
    client_write_timeout_seconds: float = setting("CLIENT_WRITE_TIMEOUT_SECONDS", 60.0, _positive(float))
    retry_after_seconds: int = setting("RETRY_AFTER_SECONDS", 2, _positive(int))
    cors_allow_origins: tuple[str, ...] = setting("CORS_ALLOW_ORIGINS", (), _names)
    region: str = setting("AWS_REGION", "us-east-1", _text)
    # Set by Lambda, where LWA is the app's only client: only there is the Lambda context header,
    # with its request id and deadline, believed. Anywhere else a client could forge it.
    lambda_function_name: str = setting("AWS_LAMBDA_FUNCTION_NAME", "", _text)
    # Set by Lambda: "snap-start" when this environment was restored from a SnapStart snapshot.
    lambda_initialization_type: str = setting("AWS_LAMBDA_INITIALIZATION_TYPE", "", _text)
    # Loopback by default: LWA connects there, and nothing else should reach an unauthenticated
    # relay of the owner's credentials. A container sets LISTEN_HOST=0.0.0.0. (Not HOST: some
    # shells export that as the machine's name.)
    host: str = setting("LISTEN_HOST", "127.0.0.1", _text)
    # LWA looks for the app on AWS_LWA_PORT, then PORT: the server listens where LWA looks.
    port: int = setting(("AWS_LWA_PORT", "PORT"), 8080, _port)
    # gunicorn's: each stream holds one of the worker's threads for its whole life.
    web_concurrency: int = setting("WEB_CONCURRENCY", 1, _positive(int))
    web_threads: int = setting("WEB_THREADS", 64, _positive(int))
    log_level: str = setting("LOG_LEVEL", "warning", str.lower)
    # The longest streaming self-test (GET /diag/stream) a caller may ask for; each holds a thread.
    diag_max_seconds: int = setting("DIAG_MAX_SECONDS", 30, _positive(int))
    # Request lines declare CloudWatch metrics in this namespace (Embedded Metric Format); "-" is off.
    metrics_namespace: str = setting("METRICS_NAMESPACE", "BedrockRelay", _text)
    # Who may call: none (the URL's own AWS_IAM auth, or local use), jwt, api_key, or both.
    auth_modes: tuple[str, ...] = setting("AUTH_MODE", (), _auth_modes)
    jwt_issuer: str = setting("JWT_ISSUER", "", https_url)
    jwt_audience: tuple[str, ...] = setting("JWT_AUDIENCE", (), _names)
    jwt_jwks_url: str = setting("JWT_JWKS_URL", "", https_url)  # default: found by OIDC discovery
    jwt_required_scope: str = setting("JWT_REQUIRED_SCOPE", "", _text)
    jwt_leeway_seconds: float = setting("JWT_LEEWAY_SECONDS", 30.0, _leeway)
    api_key_hashes: tuple[tuple[str, str], ...] = setting("API_KEY_HASHES", (), _key_hashes, secret=True)
    # A Bedrock guardrail on every call, which no request can turn off.
    guardrail_id: str = setting("GUARDRAIL_ID", "", _text)
    guardrail_version: str = setting("GUARDRAIL_VERSION", "DRAFT", _text)
    guardrail_stream_mode: str = setting("GUARDRAIL_STREAM_MODE", "sync", _choice("sync", "async"))
    guardrail_trace: bool = setting("GUARDRAIL_TRACE", False, _flag)
    # The DynamoDB table of streams and conversations; unset, the store is off and costs nothing.
    streams_table: str = setting("STREAMS_TABLE", "", _text)
    persist_interval_ms: int = setting("PERSIST_INTERVAL_MS", 250, _positive(int))
    stream_ttl_hours: float = setting("STREAM_TTL_HOURS", 24.0, _positive(float))
    # A conversation is kept this long after its last answer, for the history the page lists.
    conversation_ttl_days: float = setting("CONVERSATION_TTL_DAYS", 30.0, _positive(float))
    # Complete answers to temperature-0 requests, replayed from the store for this long; 0 is off.
    answer_cache_seconds: int = setting("ANSWER_CACHE_SECONDS", 0, _whole(" of seconds", "off"))
    # Per signed-in caller, counted in the store across every environment; 0 is no limit.
    max_concurrent_streams_per_caller: int = setting("MAX_CONCURRENT_STREAMS_PER_CALLER", 0, _limit)
    daily_output_tokens_per_caller: int = setting("DAILY_OUTPUT_TOKENS_PER_CALLER", 0, _limit)

    def __post_init__(self) -> None:
        if not self.allowed_model_ids:
            object.__setattr__(self, "allowed_model_ids", (self.model_id,))
        if self.model_id not in self.allowed_model_ids:
            raise SettingsError(
                f"{env_name('model_id')} {self.model_id!r} is not in {env_name('allowed_model_ids')}"
            )
        if "jwt" in self.auth_modes and not (self.jwt_issuer and self.jwt_audience):
            raise SettingsError("AUTH_MODE jwt needs JWT_ISSUER and JWT_AUDIENCE")
        if "api_key" in self.auth_modes and not self.api_key_hashes:
            raise SettingsError("AUTH_MODE api_key needs API_KEY_HASHES (see scripts/new-api-key)")
        if self.answer_cache_seconds and not self.streams_table:
            raise SettingsError("ANSWER_CACHE_SECONDS needs STREAMS_TABLE: cached answers are stored streams")
        if self.answer_cache_seconds > self.stream_ttl_hours * 3600:
            # The answer itself would expire first, leaving the cache pointing at nothing.
            raise SettingsError("ANSWER_CACHE_SECONDS must not be longer than STREAM_TTL_HOURS")
        if self.caller_limits and not (self.streams_table and self.auth_modes):
            # Without sign-in every request is the same caller; without the store no count is shared.
            raise SettingsError(
                "MAX_CONCURRENT_STREAMS_PER_CALLER and DAILY_OUTPUT_TOKENS_PER_CALLER need "
                "AUTH_MODE (who the caller is) and STREAMS_TABLE (where callers are counted)"
            )

    @property
    def caller_limits(self) -> bool:
        """Whether a per-caller limit is set: then streams are counted per caller, and /usage reports them."""
        return bool(self.max_concurrent_streams_per_caller or self.daily_output_tokens_per_caller)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """Return a copy with the given fields replaced (tests pass a dict)."""
        overrides = dict(overrides)
        if "model_id" in overrides and self.allowed_model_ids == (self.model_id,):
            # The allowed list was only the default model: let it follow the new one.
            overrides.setdefault("allowed_model_ids", ())
        return replace(self, **overrides)

    @property
    def bind(self) -> str:
        """Return the address for the server to listen on, as gunicorn writes it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def env_name(name: str) -> str:
    """Return the environment variable a setting is read from."""
    return _FIELDS[name].metadata["env"][0]


def env_names() -> set[str]:
    """Return every environment variable the service reads."""
    return {env for item in _FIELDS.values() for env in item.metadata["env"]}


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment; unset or empty variables keep their defaults."""
    environ = os.environ if environ is None else environ
    values = {}
    for item in _FIELDS.values():
        for env in item.metadata["env"]:
            raw = environ.get(env, "").strip()
            if raw:
                try:
                    values[item.name] = item.metadata["parse"](raw)
                except ValueError as exc:
                    shown = "" if item.metadata["secret"] else f", got {raw!r}"
                    raise SettingsError(f"{env} {exc}{shown}") from None
                break
    return Settings(**values)


_FIELDS = {item.name: item for item in fields(Settings)}
