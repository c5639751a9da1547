"""The service's settings: every environment variable it reads, read in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

MODEL_ID = "MODEL_ID"
ALLOWED_MODEL_IDS = "ALLOWED_MODEL_IDS"
MAX_TOKENS_LIMIT = "MAX_TOKENS_LIMIT"
MAX_REQUEST_BYTES = "MAX_REQUEST_BYTES"
HEARTBEAT_SECONDS = "HEARTBEAT_SECONDS"
DEADLINE_MARGIN_SECONDS = "DEADLINE_MARGIN_SECONDS"
MAX_STREAM_SECONDS = "MAX_STREAM_SECONDS"
BEDROCK_READ_TIMEOUT_SECONDS = "BEDROCK_READ_TIMEOUT_SECONDS"
BEDROCK_CONNECT_TIMEOUT_SECONDS = "BEDROCK_CONNECT_TIMEOUT_SECONDS"
BEDROCK_MAX_ATTEMPTS = "BEDROCK_MAX_ATTEMPTS"
RETRY_AFTER_SECONDS = "RETRY_AFTER_SECONDS"
CORS_ALLOW_ORIGINS = "CORS_ALLOW_ORIGINS"
AWS_REGION = "AWS_REGION"

DEFAULT_MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


class SettingsError(ValueError):
    """A setting from the environment has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything the service can be configured with, with its defaults."""

    model_id: str = DEFAULT_MODEL_ID
    allowed_model_ids: tuple[str, ...] = ()
    max_tokens_limit: int = 8192
    max_request_bytes: int = 1024 * 1024
    heartbeat_seconds: float = 15.0
    deadline_margin_seconds: float = 5.0
    max_stream_seconds: float = 900.0
    # Bedrock may pause between bytes while a model thinks; the stream's own
    # deadline, not the socket, should end a long stream.
    bedrock_read_timeout_seconds: float = 900.0
    bedrock_connect_timeout_seconds: float = 10.0
    bedrock_max_attempts: int = 3
    retry_after_seconds: int = 2
    cors_allow_origins: tuple[str, ...] = ()
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        if not self.allowed_model_ids:
            object.__setattr__(self, "allowed_model_ids", (self.model_id,))
        if self.model_id not in self.allowed_model_ids:
            raise SettingsError(f"{MODEL_ID} {self.model_id!r} is not in {ALLOWED_MODEL_IDS}")

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """Return a copy with the given fields replaced (tests pass a dict)."""
        overrides = dict(overrides)
        if "model_id" in overrides and self.allowed_model_ids == (self.model_id,):
            # The allowed list was only the default model: let it follow the new one.
            overrides.setdefault("allowed_model_ids", ())
        return replace(self, **overrides)


_ENV_NAMES = {
    "model_id": MODEL_ID,
    "allowed_model_ids": ALLOWED_MODEL_IDS,
    "max_tokens_limit": MAX_TOKENS_LIMIT,
    "max_request_bytes": MAX_REQUEST_BYTES,
    "heartbeat_seconds": HEARTBEAT_SECONDS,
    "deadline_margin_seconds": DEADLINE_MARGIN_SECONDS,
    "max_stream_seconds": MAX_STREAM_SECONDS,
    "bedrock_read_timeout_seconds": BEDROCK_READ_TIMEOUT_SECONDS,
    "bedrock_connect_timeout_seconds": BEDROCK_CONNECT_TIMEOUT_SECONDS,
    "bedrock_max_attempts": BEDROCK_MAX_ATTEMPTS,
    "retry_after_seconds": RETRY_AFTER_SECONDS,
    "cors_allow_origins": CORS_ALLOW_ORIGINS,
    "region": AWS_REGION,
}


def _parse(name: str, raw: str, kind: Any) -> Any:
    """Convert one environment value to its field's type, naming the variable on failure."""
    try:
        if kind == "tuple[str, ...]":
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind == "int":
            value = int(raw)
        elif kind == "float":
            value = float(raw)
        else:
            return raw.strip()
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, got {raw!r}")
    return value


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment; unset or empty variables keep their defaults."""
    environ = os.environ if environ is None else environ
    values = {}
    for field in fields(Settings):
        raw = environ.get(_ENV_NAMES[field.name], "").strip()
        if raw:
            values[field.name] = _parse(_ENV_NAMES[field.name], raw, field.type)
    return Settings(**values)
