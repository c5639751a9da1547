"""GET /usage: the caller's own streams open and output tokens today, beside the limits they meet."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify

from .errors import log_answered, store_unavailable
from .invocation import owner
from .quotas import Quotas, day_of, seconds_to_midnight
from .store import StoreError

bp = Blueprint("usage", __name__)


@bp.get("/usage")
def usage() -> Response:
    """Report what the limits count for this caller; a limit of null is not set."""
    quotas: Quotas = current_app.extensions["quotas"]
    try:
        standing = quotas.standing(owner())
    except StoreError:
        raise store_unavailable() from None
    now = quotas.clock()
    limits = {
        "concurrentStreams": quotas.max_streams or None,
        "dailyOutputTokens": quotas.daily_tokens or None,
    }
    renews = datetime.fromtimestamp(now + seconds_to_midnight(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "day": day_of(now),
        "outputTokens": standing.tokens_today,
        "activeStreams": len(standing.live(now)),
        "limits": limits,
        "renewsAt": renews,
    }
    log_answered(200, "answered")
    return jsonify(body)
