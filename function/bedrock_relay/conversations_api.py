"""Conversations kept in the store: GET /conversations, GET and DELETE /conversations/{conversationId}."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .conversations import Conversations
from .errors import Refusal, log_answered, store_unavailable
from .invocation import owner
from .store import Store, StoreError
from .validation import CONVERSATION_ID

bp = Blueprint("conversations", __name__)
NO_SUCH_CONVERSATION = "no such conversation: it is unknown, expired, or not yours"


def conversations_of(store: Store) -> Conversations:
    """The conversations in the app's store, kept for CONVERSATION_TTL_DAYS after their last use."""
    settings = current_app.extensions["settings"]
    ttl = settings.conversation_ttl_days * 86400
    return Conversations(store, ttl, stream_seconds=settings.max_stream_seconds)


def _conversations() -> Conversations:
    return conversations_of(current_app.extensions["store"])


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
    """The caller's conversations, the most recently used first; only with sign-in on."""
    who = owner()
    if who == "-":
        # Without sign-in there is no "caller" to list for: each id is its own capability.
        raise Refusal(404, "not_found", "listing conversations needs sign-in (AUTH_MODE)")
    try:
        found = _conversations().of(who)
    except StoreError:
        raise store_unavailable() from None
    log_answered(200, "listed", count=len(found))
    return jsonify(conversations=found)


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
