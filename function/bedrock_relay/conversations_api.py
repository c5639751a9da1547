"""Conversations kept in the store: GET /conversations, GET and DELETE /conversations/{conversationId}."""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, jsonify, request

from .conversations import Conversations
from .errors import Refusal, log_answered, store_unavailable
from .invocation import owner
from .store import StoreError
from .validation import CONVERSATION_ID, excerpt

bp = Blueprint("conversations", __name__)
NO_SUCH_CONVERSATION = "no such conversation: it is unknown, expired, or not yours"
PAGE_SIZE = 50
# Where a page of the list starts: the last one listed before it, as its updatedAt and its id.
CURSOR = re.compile(rf"([0-9]{{1,12}}(?:\.[0-9]{{1,6}})?):({CONVERSATION_ID.pattern})")


def _conversations() -> Conversations:
    return current_app.extensions["conversations"]


def _mine(conversation_id: str) -> tuple[Conversations, dict]:
    """Return the store's conversations and this one's meta, having checked it is the caller's (else
    404, never 403)."""
    conversations = _conversations()
    try:
        known = CONVERSATION_ID.fullmatch(conversation_id) and conversations.meta(conversation_id, owner())
    except StoreError:
        raise store_unavailable() from None
    if not known:
        raise Refusal(404, "not_found", NO_SUCH_CONVERSATION)
    return conversations, known


@bp.get("/conversations")
def list_conversations() -> Response:
    """A page of the caller's conversations, the most recently used first; only with sign-in on."""
    who = owner()
    if who == "-":
        # Without sign-in there is no "caller" to list for: each id is its own capability.
        raise Refusal(404, "not_found", "listing conversations needs sign-in (AUTH_MODE)")
    limit = request.args.get("limit", str(PAGE_SIZE))
    if not re.fullmatch("[0-9]{1,2}", limit) or not 1 <= int(limit) <= PAGE_SIZE:
        raise Refusal(400, "invalid_request", f"'limit' must be from 1 to {PAGE_SIZE}, got {excerpt(limit)}")
    cursor = request.args.get("cursor")
    after = CURSOR.fullmatch(cursor) if cursor is not None else None
    if cursor is not None and after is None:
        message = f"'cursor' must be a nextCursor this service gave, got {excerpt(cursor)}"
        raise Refusal(400, "invalid_request", message)
    try:
        found, more = _conversations().of(who, int(limit), after.groups() if after else None)
    except StoreError:
        raise store_unavailable() from None
    log_answered(200, "listed", count=len(found))
    # A page may hold fewer than `limit` (expired ones are left out) and still have a next one.
    return jsonify(conversations=found, **({"nextCursor": ":".join(more)} if more else {}))


@bp.get("/conversations/<conversation_id>")
def get_conversation(conversation_id: str) -> Response:
    """The conversation's turns, in order: {role, content, stopReason?, cut?}."""
    conversations, meta = _mine(conversation_id)
    try:
        turns = conversations.turns(conversation_id)
    except StoreError:
        raise store_unavailable() from None
    log_answered(200, "read", conversationId=conversation_id)
    return jsonify({**meta, "turns": turns})


@bp.delete("/conversations/<conversation_id>")
def delete_conversation(conversation_id: str) -> tuple[str, int]:
    """Delete the conversation and its turns."""
    conversations, _ = _mine(conversation_id)
    try:
        conversations.delete(conversation_id)
    except StoreError:
        raise store_unavailable() from None
    log_answered(204, "deleted", conversationId=conversation_id)
    return "", 204
