"""Conversations in the store: their turns, their owner, and the lock that keeps one answer at a time."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable

from botocore.exceptions import ClientError

from .events import Event, Summary, Text
from .relay import Listener
from .store import Store, StoreError

logger = logging.getLogger(__name__)
META = "m"
# A turn's text is split over items of at most this many characters (4 bytes each at worst).
PART_CHARACTERS = 80_000
# An answer holds its conversation at most this long past its stream's limit; a crashed one
# cannot hold it forever.
LOCK_MARGIN_SECONDS = 60
FINISHED = ("end_turn", "stop_sequence")
TITLE_CHARACTERS = 80
# Each kept turn's digest, in hex: how a client's history is matched with the kept copy.
DIGEST_CHARACTERS = 12
# A conversation in use is renewed whole at most this often (or at half its TTL, if shorter).
RENEW_SECONDS = 86400
# DynamoDB's most actions in one transaction, and its most bytes (4 MB), less room for the keys.
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 3_500_000


class Busy(Exception):
    """Another answer is being written in this conversation."""


def new_id() -> str:
    """Return a new conversation id: random, 122 bits."""
    return str(uuid.uuid4())


# Where a conversation sits in its owner's list, newest first: its updatedAt, then its id.
Place = tuple[str, str]


def _partition(conversation_id: str) -> dict:
    """The partition key value all of a conversation's items share."""
    return {"S": f"c#{conversation_id}"}


def _key(conversation_id: str, sort: str) -> dict:
    return {"pk": _partition(conversation_id), "sk": {"S": sort}}


class Conversations:
    """Reads and writes conversations through the stream store's table and client."""

    def __init__(
        self,
        store: Store,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
        stream_seconds: float = 900,
    ):
        self.store = store
        self.ttl_seconds = ttl_seconds  # a conversation's own, longer than a stream's
        self.clock = clock
        self.hold_seconds = stream_seconds + LOCK_MARGIN_SECONDS

    def _expiry(self) -> dict:
        return {"N": str(int(self.clock() + self.ttl_seconds))}

    def _now(self) -> dict:
        # To the millisecond: the list is sorted by it, and two answers often end in one second.
        return {"N": f"{self.clock():.3f}"}

    def create(self, conversation_id: str, owner: str, title: str, stream_id: str) -> dict:
        """Make a new conversation, held for its first answer, and return it as take() does.

        Made before the answer, so the id the client is sent names a conversation at once: a
        request that follows quickly (a retry after Stop) is told it is busy, not unknown.
        """
        self.store.check_up()  # the first token waits on this
        now = self.clock()
        item = {
            **_key(conversation_id, META),
            "owner": {"S": owner},
            "turns": {"N": "0"},
            "digests": {"S": ""},
            "updatedAt": self._now(),
            "title": {"S": title[:TITLE_CHARACTERS]},
            "expiresAt": self._expiry(),
            "busyStream": {"S": stream_id},
            "busyUntil": {"N": str(int(now + self.hold_seconds))},
        }
        if owner != "-":
            item["convOwner"] = {"S": owner}  # listed by owner only when there is one
        try:
            self.store.call(
                "put_item",
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            # The SDK's retry of a write that had gone through finds it there: it is this one.
            if exc.response.get("Item", {}).get("busyStream") != {"S": stream_id}:
                raise StoreError("a new conversation's id was taken") from None
        return _held(item)

    def take(self, conversation_id: str, owner: str, stream_id: str) -> dict | None:
        """Hold the caller's conversation for one answer and return its meta item's `turns`,
        `digests` and `expiresAt`; None if it is unknown, expired or not theirs.

        One conditional write checks the owner and that no other answer holds it; raises Busy if one does.
        """
        self.store.check_up()  # the first token waits on this
        now = int(self.clock())
        try:
            answer = self.store.call(
                "update_item",
                Key=_key(conversation_id, META),
                UpdateExpression="SET busyStream = :stream, busyUntil = :until",
                # busyStream = :stream: a retried attempt whose first try took the hold but lost its answer.
                ConditionExpression="#owner = :owner AND expiresAt > :now "
                "AND (attribute_not_exists(busyUntil) OR busyUntil < :now OR busyStream = :stream)",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":stream": {"S": stream_id},
                    ":until": {"N": str(int(now + self.hold_seconds))},
                    ":now": {"N": str(now)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            old = exc.response.get("Item")
            if old and old["owner"]["S"] == owner and int(old["expiresAt"]["N"]) > now:
                raise Busy from None
            return None
        return _held(answer["Attributes"])

    def meta(self, conversation_id: str, owner: str) -> dict | None:
        """Return the conversation's meta item; None if unknown, expired, or someone else's."""
        item = self.store.call("get_item", Key=_key(conversation_id, META), ConsistentRead=True).get("Item")
        if not item or int(item["expiresAt"]["N"]) <= self.clock() or item["owner"]["S"] != owner:
            return None
        return _listed(item)

    def turns(self, conversation_id: str) -> list[dict]:
        """Return the conversation's turns in order: {role, content, files?, stopReason?, cut?}.

        Only what its meta item counts: an edit that shortened the conversation may leave turns, or
        parts of a turn, that it no longer counts (they expire with their TTL).
        """
        turns: dict[int, dict] = {}
        counted, parts = 0, {}
        # The meta item ("m") sorts before the turns ("t#..."): one query reads both.
        found = self.store.query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _partition(conversation_id)},
            ConsistentRead=True,
        )
        for item in found:
            if item["sk"]["S"] == META:
                counted = int(item["turns"]["N"])
                continue
            _, number, part = item["sk"]["S"].split("#")
            number, part = int(number), int(part)
            if number >= counted or part >= parts.get(number, part + 1):
                continue
            turn = turns.setdefault(number, {"role": item["role"]["S"], "content": ""})
            turn["content"] += item["text"]["S"]
            if "parts" in item:
                parts[number] = int(item["parts"]["N"])
            if "files" in item:
                turn["files"] = json.loads(item["files"]["S"])
            if "stopReason" in item:
                turn["stopReason"] = item["stopReason"]["S"]
            if "cut" in item:
                turn["cut"] = True
        return [turns[number] for number in sorted(turns)]

    def record(
        self, conversation_id: str, first: int, turns: list[dict], held: dict, stream_id: str, model_id: str
    ) -> int:
        """Store turns numbered from `first` (replacing any kept from there on) and free the
        conversation, all or nothing; count the items written.

        Readers go by the meta item's count, moved last, in the transaction that overwrites any
        turn it counts: so no one sees half an exchange, nor turns of two branches.
        """
        puts = [
            {"Put": {"Item": item}}
            for item in self._turn_items(conversation_id, first, turns, self._expiry())
        ]
        digests = held["digests"][: first * DIGEST_CHARACTERS] + "".join(map(digest, turns))
        last = {"Update": self._counted(conversation_id, first + len(turns), digests, stream_id, model_id)}
        early: list[dict] = []
        if not _fits([*puts, last]):
            # Too much for one transaction (a long history, a huge message): count the kept turns
            # down to `first` (if an edit goes back), write the turns, then count them in.
            if first < held["turns"]:
                kept = held["digests"][: first * DIGEST_CHARACTERS]
                try:
                    self.store.call("update_item", **self._counted(conversation_id, first, kept, stream_id))
                except ClientError:
                    raise StoreError("the conversation's hold lapsed") from None
            early, puts = puts, []
        final = [*puts, last]
        # Each checked against the hold: an answer whose hold lapsed writes nothing.
        hold = {"ConditionCheck": _while_held(conversation_id, stream_id)}
        for chunk in _chunks(early, hold):
            self.store.transact([*chunk, hold])
        if first < held["turns"]:
            final += self._stale(conversation_id, first, [*early, *puts], MAX_TRANSACTION_ITEMS - len(final))
        self.store.transact(final)
        return len(early) + len(final)

    def _counted(
        self, conversation_id: str, count: int, digests: str, stream_id: str, model_id: str | None = None
    ) -> dict:
        """The update that sets how many turns a conversation holds; with the model, it also ends
        the answer's hold. Only while the answer holds it: one whose hold lapsed writes nothing."""
        update = "SET turns = :turns, digests = :digests"
        values = {":turns": {"N": str(count)}, ":digests": {"S": digests}}
        if model_id is not None:
            update = f"REMOVE busyUntil, busyStream {update}, updatedAt = :now, modelId = :model"
            values |= {":now": self._now(), ":model": {"S": model_id}}
        return {**_while_held(conversation_id, stream_id, values=values), "UpdateExpression": update}

    @staticmethod
    def _turn_items(conversation_id: str, first: int, turns: list[dict], expires: dict) -> list[dict]:
        """The items of turns numbered from `first`: each turn's text split into parts."""
        items = []
        for offset, turn in enumerate(turns):
            text = turn["content"]
            starts = range(0, max(1, len(text)), PART_CHARACTERS)
            for part, start in enumerate(starts):
                item = {
                    **_key(conversation_id, f"t#{first + offset:06d}#{part:03d}"),
                    "role": {"S": turn["role"]},
                    "text": {"S": text[start : start + PART_CHARACTERS]},
                    "expiresAt": expires,
                }
                if part == 0:
                    item["parts"] = {"N": str(len(starts))}
                    if turn.get("files"):
                        item["files"] = {"S": json.dumps(turn["files"], ensure_ascii=False)}
                    if "stopReason" in turn:
                        item["stopReason"] = {"S": turn["stopReason"] or "none"}
                    if turn.get("cut"):
                        item["cut"] = {"BOOL": True}
                items.append(item)
        return items

    def _stale(self, conversation_id: str, first: int, puts: list[dict], room: int) -> list[dict]:
        """Deletes of the turns from `first` on that `puts` do not overwrite, as many as there is
        `room` for; the meta item's count hides any left over until they expire."""
        written = {put["Put"]["Item"]["sk"]["S"] for put in puts}
        answer = self.store.call(
            "query",
            KeyConditionExpression="pk = :pk AND sk >= :first",
            ExpressionAttributeValues={":pk": _partition(conversation_id), ":first": {"S": f"t#{first:06d}"}},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
        )
        stale = [item for item in answer.get("Items", []) if item["sk"]["S"] not in written]
        return [{"Delete": {"Key": {"pk": item["pk"], "sk": item["sk"]}}} for item in stale[: max(0, room)]]

    def renew(self, conversation_id: str) -> None:
        """Keep every item of a conversation in use for another TTL. The meta item's expiry is the
        earliest of its items', and moves only here, with all of them."""
        expires = self._expiry()
        items = self._items(conversation_id)
        # The meta item ("m", read first) last: it says all its turns are renewed once they are.
        for item in [*items[1:], *items[:1]]:
            with contextlib.suppress(ClientError):  # deleted meanwhile: never recreate one
                self.store.call(
                    "update_item",
                    Key={"pk": item["pk"], "sk": item["sk"]},
                    UpdateExpression="SET expiresAt = :expires",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":expires": expires},
                )

    def due(self, held: dict) -> bool:
        """Whether a conversation in use is due to be renewed: once a day, or at half its TTL."""
        return held["expiresAt"] < self.clock() + self.ttl_seconds - min(RENEW_SECONDS, self.ttl_seconds / 2)

    def _items(self, conversation_id: str) -> list[dict]:
        """Return the keys of every item of the conversation, its meta item first."""
        found = self.store.query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _partition(conversation_id)},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,  # renew must not miss a turn just written
        )
        return list(found)

    def release(self, conversation_id: str, stream_id: str, made: bool = False) -> None:
        """Let the next answer in, with no turns added; a conversation this answer `made`, which
        kept none, is deleted."""
        if made:
            kept_none = _while_held(conversation_id, stream_id, "turns = :none", {":none": {"N": "0"}})
            with contextlib.suppress(ClientError):  # it kept a turn after all, or its hold lapsed
                self.store.call("delete_item", **kept_none)
                return
        let_go = _while_held(conversation_id, stream_id)
        with contextlib.suppress(ClientError):  # the hold lapsed and another answer has it, or deleted
            self.store.call("update_item", **let_go, UpdateExpression="REMOVE busyUntil, busyStream")

    def delete(self, conversation_id: str) -> None:
        """Delete the conversation: its meta item first, so it is gone at once, then its turns."""
        for item in self._items(conversation_id):
            self.store.call("delete_item", Key={"pk": item["pk"], "sk": item["sk"]})

    def of(
        self, owner: str, limit: int, after: tuple | None = None
    ) -> tuple[list[dict], tuple[str, str] | None]:
        """Return a page of the owner's conversations, the most recently used first, and where the next
        page starts (the place of the last one read; None after the last page)."""
        query: dict = {
            "IndexName": "ConversationsByOwner",
            "KeyConditionExpression": "convOwner = :owner",
            "ExpressionAttributeValues": {":owner": {"S": owner}},
            "ScanIndexForward": False,
            # One more than the page: DynamoDB stops at a full page with a key to go on from even
            # when nothing follows, and a caller must not be offered an empty next page.
            "Limit": limit + 1,
        }
        if after is not None:
            updated_at, conversation_id = after
            start = {"convOwner": {"S": owner}, "updatedAt": {"N": updated_at}}
            query["ExclusiveStartKey"] = {**start, **_key(conversation_id, META)}
        answer = self.store.call("query", **query)
        items = answer.get("Items", [])
        if len(items) > limit:
            items, more = items[:limit], _place(items[limit - 1])
        else:  # a short page may still have stopped early, at DynamoDB's 1 MB
            more = _place(answer["LastEvaluatedKey"]) if "LastEvaluatedKey" in answer else None
        now = self.clock()
        found = [
            _listed(item)
            for item in items
            # One being answered for the first time shows; one whose first answer died does not.
            if int(item["expiresAt"]["N"]) > now
            and (int(item["turns"]["N"]) or int(item.get("busyUntil", {"N": "0"})["N"]) > now)
        ]
        return found, more


def _while_held(conversation_id: str, stream_id: str, also: str = "", values: dict | None = None) -> dict:
    """The key and condition of a write to the meta item that only the answer holding it may make
    (and only if `also` holds), with the condition's and the write's `values`."""
    return {
        "Key": _key(conversation_id, META),
        "ConditionExpression": " AND ".join(filter(None, ["busyStream = :stream", also])),
        "ExpressionAttributeValues": {":stream": {"S": stream_id}, **(values or {})},
    }


def _size(action: dict) -> int:
    """About how many bytes an action writes: its text, and a little for the rest."""
    item = next(iter(action.values())).get("Item", {})
    return len(item.get("text", {}).get("S", "").encode()) + 500


def _fits(actions: list[dict]) -> bool:
    return len(actions) <= MAX_TRANSACTION_ITEMS and sum(map(_size, actions)) <= MAX_TRANSACTION_BYTES


def _chunks(actions: list[dict], extra: dict) -> list[list[dict]]:
    """Split actions into transactions DynamoDB takes, in order, each with room for `extra`."""
    chunks: list[list[dict]] = [[]]
    for action in actions:
        if not _fits([*chunks[-1], action, extra]):
            chunks.append([])
        chunks[-1].append(action)
    return [chunk for chunk in chunks if chunk]


def _held(item: dict) -> dict:
    """What an answer needs of its conversation's meta item."""
    count, digests = int(item["turns"]["N"]), item.get("digests", {}).get("S", "")
    return {
        "turns": count,
        # Kept before digests were: matched by count alone, and then known by digest from here on.
        "digests": digests if len(digests) == count * DIGEST_CHARACTERS else "?" * count * DIGEST_CHARACTERS,
        "expiresAt": int(item["expiresAt"]["N"]),
    }


def digest(turn: dict) -> str:
    """A short digest of a turn: its role and its text as a kept copy gives it back (a message of
    files alone as the files' names), so a client that reopens a kept copy sends the same."""
    kept = json.dumps([turn["role"], as_message(turn)["content"][0]["text"]], ensure_ascii=False)
    return hashlib.sha256(kept.encode()).hexdigest()[:DIGEST_CHARACTERS]


def differs(held: dict, turns: list[dict]) -> int:
    """The index of the first of a client's turns (all but its last) the kept copy does not hold."""
    known = held["digests"]
    for index, turn in enumerate(turns[: min(held["turns"], len(turns) - 1)]):
        mine = known[index * DIGEST_CHARACTERS : (index + 1) * DIGEST_CHARACTERS]
        if mine != digest(turn) and not mine.startswith("?"):
            return index
    return min(held["turns"], len(turns) - 1)


def _id(item: dict) -> str:
    """The id of the conversation an item belongs to."""
    return item["pk"]["S"].removeprefix("c#")


def _place(item: dict) -> Place:
    """Where a meta item sits in its owner's list: its updatedAt, then its id."""
    return item["updatedAt"]["N"], _id(item)


def _listed(item: dict) -> dict:
    """A conversation's meta item as a client sees it."""
    listed = {
        "conversationId": _id(item),
        "title": item.get("title", {}).get("S", ""),
        "turns": int(item["turns"]["N"]),
        "updatedAt": int(float(item["updatedAt"]["N"])),
    }
    if "modelId" in item:
        listed["modelId"] = item["modelId"]["S"]
    return listed


def asked(messages: list[dict]) -> list[dict]:
    """Return Converse messages as turns to keep: their text, and the files they held by name
    (a file itself is too big for the store, and was the client's to send again)."""
    turns = []
    for message in messages:
        blocks = message["content"]
        turn = {"role": message["role"], "content": "\n\n".join(b["text"] for b in blocks if "text" in b)}
        files = [_file(block) for block in blocks if "image" in block or "document" in block]
        if files:
            turn["files"] = files
        turns.append(turn)
    return turns


def as_message(turn: dict) -> dict:
    """Return a kept turn as a Converse message: its text, or if it had none, the files it held."""
    named = ", ".join(file.get("name", file["type"]) for file in turn.get("files", []))
    text = turn["content"] or f"(files not kept: {named})"
    return {"role": turn["role"], "content": [{"text": text}]}


def _file(block: dict) -> dict:
    kind = "image" if "image" in block else "document"
    named = {"name": block[kind]["name"]} if "name" in block[kind] else {}
    return {"type": kind, "format": block[kind]["format"], **named}


class Keeper(Listener):
    """Stores an exchange in its conversation once the answer ends, before the client is sent the end."""

    def __init__(
        self,
        conversations: Conversations,
        conversation_id: str,
        held: dict,
        stream_id: str,
        model_id: str = "",
        made: bool = False,
        first: int = 0,
        turns: list[dict] | None = None,
    ):
        self.conversations = conversations
        self.conversation_id = conversation_id
        self.held = held  # what take() or create() returned
        self.stream_id = stream_id  # the answer holding the conversation
        self.model_id = model_id
        self.made = made  # made by this answer (create), so deleted if it keeps nothing
        self.first = first
        self.turns = turns or []  # the turns to keep ahead of the answer, numbered from `first`
        self._events: list[Event] = []
        self._done = False
        self._unfreed = False  # the hold could not be freed at the end: try again at close
        self._renew = False

    def on_events(self, events: list[Event]) -> None:
        self._events.extend(events)

    def on_end(self, summary: Summary) -> None:
        self._done = True
        answer = "".join(event.text for event in self._events if type(event) is Text)
        try:
            if not answer:
                # Nothing was answered: the question is not kept either, so roles keep alternating.
                self._free()
                return
            reply: dict = {"role": "assistant", "content": answer, "stopReason": summary.stop_reason}
            if summary.stop_reason not in FINISHED:
                reply["cut"] = True
            conversations, turns = self.conversations, [*self.turns, reply]
            writes = conversations.record(
                self.conversation_id, self.first, turns, self.held, self.stream_id, self.model_id
            )
            # The hold taken (or the conversation made) when the request came, and these writes.
            summary.store_requests = (summary.store_requests or 0) + 1 + writes
            self._renew = conversations.due(self.held)  # after the client has its end, not before
        except StoreError:
            # Not kept; the hold is freed when the response closes, or lapses by itself.
            self._unfreed = True
            logger.warning("conversation %s: the exchange was not stored", self.conversation_id)

    def on_close(self, summary: Summary) -> None:  # noqa: ARG002 - the listener interface
        if not self._done or self._unfreed:
            self.abandon()
        if self._renew:
            with contextlib.suppress(StoreError):
                self.conversations.renew(self.conversation_id)

    def abandon(self) -> None:
        """The answer will not be kept (it never started or ended, or failed to store): free the hold."""
        self._done = True
        self._unfreed = False
        self._free()

    def _free(self) -> None:
        let_go(self.conversations, self.conversation_id, self.stream_id, self.made)


def let_go(conversations: Conversations, conversation_id: str, stream_id: str, made: bool) -> None:
    """Free an answer's hold on its conversation if the store lets us; it lapses by itself if not."""
    with contextlib.suppress(StoreError):
        conversations.release(conversation_id, stream_id, made)
