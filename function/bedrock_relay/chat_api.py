"""The native API: POST /chat, from its request body to a stream in the format the client accepts."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, current_app, g, request
from werkzeug.exceptions import ClientDisconnected, HTTPException

from . import formats, invocation
from .bedrock import UpstreamError, open_stream
from .errors import Refusal, error_response, log_rejected, store_unavailable
from .events import CANCELLED, INTERNAL_ERROR, Interrupt
from .invocation import owner
from .logs import RequestLog
from .peer import Peer
from .pump import Pump
from .relay import Listener, Relay, Source, Writer
from .settings import Settings
from .validation import ChatRequest, InvalidRequest, parse_body, validate

if TYPE_CHECKING:
    from .answer_cache import Hit
    from .conversations import Keeper
    from .quotas import Lease
    from .recorder import Recorder
    from .store import Store

logger = logging.getLogger(__name__)
bp = Blueprint("chat", __name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    # Proxies such as nginx buffer responses unless told not to.
    "X-Accel-Buffering": "no",
    # Stops browsers buffering the start of a text/plain body to sniff its type.
    "X-Content-Type-Options": "nosniff",
}


@bp.errorhandler(InvalidRequest)
def _invalid_request(exc: InvalidRequest) -> Response:
    log_rejected(400, exc.code, exc.message)
    return error_response(400, exc.code, exc.message)


@bp.errorhandler(UpstreamError)
def _upstream_error(exc: UpstreamError) -> Response:
    log_rejected(exc.status, exc.code, exc.message, attempts=exc.attempts)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return error_response(exc.status, exc.code, exc.message, headers)


def read_body(settings: Settings) -> bytes:
    try:
        data = request.get_data(cache=False)
    except ClientDisconnected as exc:
        if not isinstance(exc.__context__, TimeoutError):
            raise
        # Only a body sent after `Expect: 100-continue` is read here rather than before the thread.
        timeout = settings.request_read_timeout_seconds
        abort(408, f"the request body did not arrive within {timeout:g} seconds")
    except HTTPException:
        raise
    except Exception:
        # The server's own parser refuses a malformed chunked body as it is read: a bad chunk
        # size, a missing terminator. That is the client's error, not a crash.
        abort(400, "the request body could not be read: its chunked encoding is malformed")
    # Without a Content-Length (a chunked body) werkzeug stops at its limit instead of refusing.
    if len(data) > settings.max_request_bytes:
        abort(413)
    return data


def negotiate() -> str:
    """Return the format the client's Accept header asks for; plain text when it names none."""
    return request.accept_mimetypes.best_match(formats.MEDIA_TYPES, default=formats.TEXT)


@bp.post("/chat")
def chat() -> Response:
    """Validate the request, open the Bedrock stream, then relay it in the negotiated format."""
    settings: Settings = current_app.extensions["settings"]
    media_type = negotiate()
    # Taken before the Bedrock call, so a slow start eats into the stream, not past the deadline.
    deadline = invocation.deadline(settings)
    g.log_fields = {**g.get("log_fields", {}), "format": media_type}
    chat_request = validate(parse_body(read_body(settings)), settings)
    g.log_fields["modelId"] = chat_request.model_id
    if deadline <= time.monotonic():
        message = "too little time is left before the Lambda deadline"
        log_rejected(503, "deadline", message)
        return error_response(503, "deadline", message)
    store = current_app.extensions.get("store")
    if chat_request.store and store is None:
        field = "conversationId" if chat_request.conversation_id else "store"
        raise InvalidRequest(f"'{field}' needs the stream store, which is off here (STREAMS_TABLE)")
    # With the store on, the stream is kept under the request's id, to be resumed or cancelled.
    stream_id = g.request_id if store is not None else None
    keeper = _conversation(chat_request, stream_id) if store is not None else None
    # After the conversation's turns are in: they are part of what the answer depends on.
    cache_key, hit = cached_answer(chat_request.converse_args, chat_request.answer_cache)
    ids: dict = {"streamId": hit.stream_id if hit else stream_id} if stream_id else {}
    if hit:
        ids["cached"] = True
    if keeper is not None:
        ids["conversationId"] = keeper.conversation_id
    g.log_fields.update(ids)
    writer = formats.WRITERS[media_type](g.request_id, chat_request.model_id, ids)
    # Everything that can fail the request happens before the status is sent; the stream opens last.
    try:
        source = open_source(chat_request.converse_args, hit, deadline)
        log = RequestLog(requestId=g.request_id, **g.log_fields)
        listeners: list[Listener] = [log] if keeper is None else [log, keeper]
        relay = relay_for(source, writer, chat_request.model_id, deadline, listeners, cache_key)
    except BaseException:
        if keeper is not None:
            keeper.abandon()
        raise
    return respond(relay, media_type, stream_headers(ids))


def stream_headers(ids: dict) -> dict[str, str]:
    """The headers that tell a client which stream and conversation it reads, and whether it came from
    the answer cache."""
    headers = {"X-Stream-Id": ids["streamId"]} if ids.get("streamId") else {}
    if ids.get("conversationId"):
        headers["X-Conversation-Id"] = ids["conversationId"]  # for a text client, which has no start event
    if "answerCache" in g.log_fields:
        headers["X-Answer-Cache"] = g.log_fields["answerCache"]
    return headers


def cached_answer(converse_args: dict, wanted: bool) -> tuple[str | None, Hit | None]:
    """With the answer cache on: the key to keep this request's answer under (None if it is not to be
    kept) and the answer kept already (None on a miss); the log line says which."""
    cache = current_app.extensions.get("answer_cache")
    if cache is None:
        return None, None
    from .store import StoreError

    if not cache.eligible(converse_args):
        g.log_fields["answerCache"] = "ineligible"
        return None, None
    key = cache.key(converse_args, owner())
    # A bypass still keeps its fresh answer: the next request gets it.
    if not wanted or "no-cache" in request.headers.get("Cache-Control", ""):
        g.log_fields["answerCache"] = "bypass"
        return key, None
    try:
        hit = cache.answer(key)
    except StoreError as exc:
        logger.warning("the answer cache cannot be read: %s", exc)
        g.log_fields["answerCache"] = "unavailable"
        return key, None
    g.log_fields["answerCache"] = "hit" if hit else "miss"
    return key, hit


def open_source(converse_args: dict, hit: Hit | None, deadline: float) -> Source:
    """The stream's events: a cached answer, or a new Bedrock stream once the caller's limits admit it."""
    if hit is not None:
        return hit
    settings: Settings = current_app.extensions["settings"]
    lease = _admit(settings, deadline)
    try:
        upstream = open_stream(current_app.extensions["bedrock"], converse_args, settings.retry_after_seconds)
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    return Pump(upstream)


def _admit(settings: Settings, deadline: float) -> Lease | None:
    """With per-caller limits on, hold a slot for this stream (kept in `g.lease`), or refuse it with 429."""
    quotas = current_app.extensions.get("quotas")
    if quotas is None:
        return None
    # The slot outlives the stream by the margin Lambda leaves after the relay's deadline: a
    # process that dies holding it has been stopped by then, and the slot frees by itself.
    until = invocation.wall_clock(deadline) + settings.deadline_margin_seconds
    lease = g.lease = quotas.admit(owner(), g.request_id, until)
    if not lease.held:
        g.log_fields["limits"] = "unavailable"
    return lease


def relay_for(
    source: Source,
    writer: Writer,
    model_id: str,
    deadline: float,
    listeners: list[Listener],
    cache_key: str | None = None,
) -> Relay:
    """The relay of every front door. With the store on, a new stream is kept under the request id,
    finished for a resume when its client leaves, and its whole answer kept under `cache_key`."""
    try:
        return _relay(source, writer, model_id, deadline, listeners, cache_key)
    except BaseException:
        # Nothing will close a relay that was never made: stop Bedrock, and free the caller's slot.
        source.cancel()
        if g.get("lease") is not None:
            g.lease.release()
        raise


def _relay(
    source: Source,
    writer: Writer,
    model_id: str,
    deadline: float,
    listeners: list[Listener],
    cache_key: str | None,
) -> Relay:
    settings: Settings = current_app.extensions["settings"]
    store = current_app.extensions.get("store")
    generated = isinstance(source, Pump)  # not replayed from the answer cache
    if generated and g.get("lease") is not None:
        listeners = [*listeners, g.lease]
    if store is not None and generated:
        recorder = record(store, source, model_id, deadline)
        listeners = [*listeners, recorder]
        if cache_key is not None:
            from .answer_cache import Keep

            listeners.append(Keep(current_app.extensions["answer_cache"], cache_key, g.request_id, recorder))
    relay = Relay(
        source,
        writer,
        started=g.started,
        deadline=deadline,
        heartbeat_seconds=settings.heartbeat_seconds,
        peer=Peer.of(request.environ.get("gunicorn.socket"), settings.client_write_timeout_seconds),
        listeners=listeners,
        detach=store is not None and generated,
    )
    relay.summary.cached = not generated
    return relay


def record(store: Store, pump: Pump, model_id: str, deadline: float) -> Recorder:
    """Keep this request's stream in the store, under its request id, from now until its end."""
    from .recorder import Recorder

    settings: Settings = current_app.extensions["settings"]
    opening = {
        "owner": owner(),
        "model_id": model_id,
        "live_until": invocation.wall_clock(deadline),
    }
    interval = settings.persist_interval_ms / 1000
    recorder = Recorder(store, g.request_id, opening, interval, lambda: pump.interrupt(Interrupt(CANCELLED)))
    recorder.start()
    return recorder


def _conversation(chat_request: ChatRequest, stream_id: str) -> Keeper | None:
    """Hold the request's conversation, or make a new one, to keep the exchange in.

    With a `prompt` the service holds the history: the stored turns go first. With `messages` the
    client holds it, and the conversation keeps a copy: kept turns from the first message that
    differs on (an edit, a retry) are replaced. Only a `prompt` going on with a conversation needs
    the store to be answered: otherwise a store that fails leaves the exchange unkept, never
    unanswered.
    """
    if not chat_request.keep:
        return None
    from .conversations import Busy, Keeper, as_message, asked, differs, let_go, new_id
    from .conversations_api import NO_SUCH_CONVERSATION
    from .store import StoreDown, StoreError

    conversations = current_app.extensions["conversations"]
    who, conversation_id = owner(), chat_request.conversation_id
    messages = chat_request.converse_args["messages"]
    turns = asked(messages)
    made = conversation_id is None
    try:
        if made:
            # The client may send the id back to go on.
            conversation_id, title = new_id(), turns[0]["content"] or "Untitled"
            held = conversations.create(conversation_id, who, title, stream_id)
        else:
            held = conversations.take(conversation_id, who, stream_id)
            if held is None:
                raise Refusal(404, "not_found", NO_SUCH_CONVERSATION)
        keeping = (conversations, conversation_id, held, stream_id, chat_request.model_id, made)
        if chat_request.prompt is None:
            first = differs(held, turns)
            return Keeper(*keeping, first, turns[first:])
        keeper = Keeper(*keeping, held["turns"], turns)
        try:
            kept = conversations.turns(conversation_id) if held["turns"] else []
        except BaseException:
            keeper.abandon()
            raise
    except Busy:
        message = "another answer is being written in this conversation; send again once it has ended"
        raise Refusal(409, "conversation_busy", message) from None
    except StoreError as exc:
        if not isinstance(exc, StoreDown):  # one not tried took no hold
            # The hold may have been taken before the store failed: let it go if the store lets us,
            # off this request's path (a store that hangs would make it wait twice).
            held_by = (conversations, conversation_id, stream_id, made)
            threading.Thread(target=let_go, args=held_by, daemon=True).start()
        if not made and chat_request.prompt is not None:
            raise store_unavailable() from None  # its history is there
        g.log_fields["conversation"] = "unavailable"
        return None
    messages[:0] = [as_message(turn) for turn in kept]
    return keeper


def respond(relay: Relay, media_type: str, headers: dict[str, str]) -> Response:
    """Answer with the relay's stream, or for JSON with its whole answer; the relay is closed after."""
    try:
        if media_type == formats.JSON:
            return _answer_at_once(relay, headers)
        response = Response(
            relay.body(), headers={**STREAM_HEADERS, **headers}, content_type=relay.writer.content_type
        )
        # Runs after the server has written the last chunk, or if it never takes the body at all.
        response.call_on_close(relay.close)
        return response
    except BaseException:
        relay.close()
        raise


def _answer_at_once(relay: Relay, headers: dict[str, str]) -> Response:
    """Run the stream to its end and answer once, with a real status if it failed."""
    try:
        body = relay.run()
    except Exception:
        logger.exception("the stream failed")
        relay.summary.status = 500
        relay.close()
        return error_response(500, INTERNAL_ERROR, f"the relay failed; see request id {g.request_id}")
    status = relay.summary.status or 200  # None only if the client left: nobody reads this answer
    headers = {**STREAM_HEADERS, **headers} if status == 200 else headers
    response = Response(body, status=status, headers=headers, content_type=relay.writer.content_type)
    response.call_on_close(relay.close)
    return response
