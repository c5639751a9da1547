"""Complete answers to deterministic requests, kept as stored streams and replayed without calling Bedrock."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .events import COMPLETE, Stop, Summary, Usage
from .pump import END
from .relay import Listener
from .store import Store, StoreError

if TYPE_CHECKING:
    from .recorder import Recorder

logger = logging.getLogger(__name__)
SORT = "a"
# Only an answer the model ended itself is whole: not one cut by maxTokens, a guardrail or a cancel.
WHOLE = ("end_turn", "stop_sequence")
# Bumped when what an answer depends on changes shape, so old entries are never matched.
KEY_VERSION = "1"
# How long the end of an answer may wait for it to be kept.
KEEP_WAIT_SECONDS = 0.5


def _key(digest: str) -> dict:
    return {"pk": {"S": f"a#{digest}"}, "sk": {"S": SORT}}


class AnswerCache:
    """Maps a request's key to the stored stream that answered it, for `seconds`."""

    def __init__(
        self, store: Store, seconds: int, guardrail: tuple = (), clock: Callable[[], float] = time.time
    ):
        self.store = store
        self.seconds = seconds
        self.guardrail = list(guardrail)  # (id, version, stream mode) of the one in force, if any
        self.clock = clock

    def eligible(self, converse_args: dict) -> bool:
        """Tell whether a request's answer may be cached: temperature 0, no tools to call, and no
        DRAFT guardrail, which can be edited in place (what it once let through may not pass now)."""
        temperature = converse_args.get("inferenceConfig", {}).get("temperature")
        draft = self.guardrail and self.guardrail[1] == "DRAFT"
        return temperature == 0 and "toolConfig" not in converse_args and not draft

    def key(self, converse_args: dict, owner: str) -> str:
        """Hash everything the answer depends on: model, system, messages, every parameter, the
        guardrail in force, and the caller, so no one is ever served another caller's answer."""
        parts = [KEY_VERSION, owner, self.guardrail, converse_args]
        # An attachment's bytes count by their digest.
        text = json.dumps(parts, sort_keys=True, default=lambda raw: hashlib.sha256(raw).hexdigest())
        return hashlib.sha256(text.encode()).hexdigest()

    def find(self, key: str) -> str | None:
        """Return the stream that answered this key, if one did within `seconds`; raise StoreError."""
        item = self.store.call("get_item", Key=_key(key)).get("Item")
        if not item or int(item["expiresAt"]["N"]) <= self.clock():
            return None
        return item["streamId"]["S"]

    def answer(self, key: str) -> Hit | None:
        """Return the cached answer to this key, read whole; None if there is none, or if what is
        stored is no longer whole (its items expired), which is then forgotten. Raise StoreError."""
        self.store.check_up()  # the first token waits on this
        stream_id = self.find(key)
        if stream_id is None:
            return None
        batches, end = self.store.read(stream_id, 0)
        deltas = [delta for batch in batches for delta in batch]
        if end is None or [delta.seq for delta in deltas] != list(range(1, end["lastSeq"] + 1)):
            logger.warning("stream %s: a cached answer is no longer whole; asking Bedrock again", stream_id)
            self.store.call("delete_item", Key=_key(key))
            return None
        # The original's end, less what belongs to the original: its usage and its timings.
        return Hit(stream_id, [*deltas, Stop(end["stopReason"]), Usage(0, 0, 0)])

    def keep(self, key: str, stream_id: str) -> None:
        """Remember that this stream answered the key; raise StoreError."""
        expires = int(self.clock() + self.seconds)
        item = {**_key(key), "streamId": {"S": stream_id}, "expiresAt": {"N": str(expires)}}
        self.store.call("put_item", Item=item)


class Keep(Listener):
    """Keeps a stream's answer in the cache once it ended whole and was stored whole."""

    def __init__(self, cache: AnswerCache, key: str, stream_id: str, recorder: Recorder):
        self.cache, self.key, self.stream_id, self.recorder = cache, key, stream_id, recorder

    def on_end(self, summary: Summary) -> None:
        # After the recorder's own end (listeners run in order): kept only if its end was stored.
        if summary.outcome != COMPLETE or summary.stop_reason not in WHOLE or not self.recorder.stored:
            return
        # Before the client's end, so the next request finds it; but a slow store may not hold
        # the end back past a moment: the write then finishes on its own.
        writer = threading.Thread(target=self._keep, args=(summary,), name="answer-cache", daemon=True)
        writer.start()
        writer.join(KEEP_WAIT_SECONDS)

    def _keep(self, summary: Summary) -> None:
        try:
            self.cache.keep(self.key, self.stream_id)
            summary.store_requests = (summary.store_requests or 0) + 1
        except StoreError as exc:
            logger.warning("stream %s: not kept in the answer cache: %s", self.stream_id, exc)


class Hit:
    """A cached answer, read whole from the store, as a relay source: all of it in one batch."""

    def __init__(self, stream_id: str, events: list):
        self.stream_id = stream_id
        self._events: list | None = events

    def start(self) -> None:
        """Nothing to start: the answer was read before the response began."""

    def cancel(self) -> None:
        """Nothing runs to be stopped."""

    def get(self, timeout: float) -> list | None:  # noqa: ARG002 - the source interface
        events, self._events = self._events, None
        return None if events is None else [*events, END]
