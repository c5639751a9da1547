"""One structured JSON log line per request; prompt and answer text never reach it."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

logger = logging.getLogger("bedrock_relay.requests")


def init_logging() -> None:
    """Send request lines to stdout as bare JSON, which CloudWatch Logs indexes as is."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def log_request(**fields: object) -> None:
    """Write one request's outcome; callers pass only metadata, never text."""
    # CloudWatch stamps each line, but locally the lines sit among gunicorn's own: say when.
    time = datetime.now(UTC).isoformat(timespec="milliseconds")
    logger.info(json.dumps({"time": time, "event": "request", **fields}, separators=(",", ":")))
