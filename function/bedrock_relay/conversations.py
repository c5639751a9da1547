"""Conversations in the store: their turns, their owner, and the lock that keeps one answer at a time."""

from __future__ import annotations

import contextlib
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
# An answer holds its conversation at most this long; a crashed one cannot hold it forever.
LOCK_SECONDS = 960
FINISHED = ("end_turn", "stop_sequence")
TITLE_CHARACTERS = 80


class Busy(Exception):
    """Another answer is being written in this conversation."""


def new_id() -> str:
    """Return a new conversation id: random, 122 bits."""
    return str(uuid.uuid4())


def _key(conversation_id: str, sort: str) -> dict:
    return {"pk": {"S": f"c#{conversation_id}"}, "sk": {"S": sort}}


class Conversations:
    """Reads and writes conversations through the stream store's table and client."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    def take(self, conversation_id: str, owner: str, stream_id: str) -> bool:
        """Hold the caller's conversation for one answer; False if it is unknown, expired or not theirs.

        One conditional write checks the owner and that no other answer holds it; raises Busy if one does.
        """
        now = int(self.clock())
        try:
            self.store.call(
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
                    ":until": {"N": str(now + LOCK_SECONDS)},
                    ":now": {"N": str(now)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            old = exc.response.get("Item")
            if old and old["owner"]["S"] == owner and int(old["expiresAt"]["N"]) > now:
                raise Busy from None
            return False
        return True

    def meta(self, conversation_id: str, owner: str) -> dict | None:
        """Return the conversation's meta item; None if unknown, expired, or someone else's."""
        item = self.store.call("get_item", Key=_key(conversation_id, META), ConsistentRead=True).get("Item")
        if not item or int(item["expiresAt"]["N"]) <= self.clock() or item["owner"]["S"] != owner:
            return None
        return {"turns": int(item["turns"]["N"]), "updatedAt": int(item["updatedAt"]["N"])}

    def turns(self, conversation_id: str) -> list[dict]:
        """Return the conversation's turns in order: {role, content, stopReason?, cut?}."""
        turns: dict[str, dict] = {}
        query: dict = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :turn)",
            "ExpressionAttributeValues": {":pk": {"S": f"c#{conversation_id}"}, ":turn": {"S": "t#"}},
            "ConsistentRead": True,
        }
        while True:
            answer = self.store.call("query", **query)
            for item in answer.get("Items", []):
                number = item["sk"]["S"].split("#")[1]
                turn = turns.setdefault(number, {"role": item["role"]["S"], "content": ""})
                turn["content"] += item["text"]["S"]
                if "stopReason" in item:
                    turn["stopReason"] = item["stopReason"]["S"]
                if "cut" in item:
                    turn["cut"] = True
            if "LastEvaluatedKey" not in answer:
                return [turns[number] for number in sorted(turns)]
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def record(
        self, conversation_id: str, first: int, turns: list[dict], owner: str | None, title: str
    ) -> int:
        """Store turns numbered from `first` and free the conversation, all or nothing; count the items.

        For a new conversation (`owner` given) its meta item is written with them, so a conversation
        is never seen without its turns, nor half an exchange kept.
        """
        now = int(self.clock())
        expires = {"N": str(int(now + self.store.ttl_seconds))}
        actions: list[dict] = []
        for offset, turn in enumerate(turns):
            text = turn["content"]
            for part, start in enumerate(range(0, max(1, len(text)), PART_CHARACTERS)):
                item = {
                    **_key(conversation_id, f"t#{first + offset:06d}#{part:03d}"),
                    "role": {"S": turn["role"]},
                    "text": {"S": text[start : start + PART_CHARACTERS]},
                    "expiresAt": expires,
                }
                if part == 0 and "stopReason" in turn:
                    item["stopReason"] = {"S": turn["stopReason"] or "none"}
                if part == 0 and turn.get("cut"):
                    item["cut"] = {"BOOL": True}
                actions.append({"Put": {"Item": item}})
        count = str(first + len(turns))
        if owner is not None:
            meta = {
                **_key(conversation_id, META),
                "owner": {"S": owner},
                "turns": {"N": count},
                "updatedAt": {"N": str(now)},
                "title": {"S": title[:TITLE_CHARACTERS]},
                "expiresAt": expires,
            }
            if owner != "-":
                meta["convOwner"] = {"S": owner}  # listed by owner only when there is one
            actions.append({"Put": {"Item": meta}})
        else:
            actions.append({"Update": self._release(conversation_id, count)})
        self.store.transact(actions)
        return len(actions)

    def _release(self, conversation_id: str, turns: str | None) -> dict:
        """The update that lets the next answer in (and keeps the conversation another TTL)."""
        now = int(self.clock())
        update = "REMOVE busyUntil, busyStream SET updatedAt = :now, expiresAt = :expires"
        values = {":now": {"N": str(now)}, ":expires": {"N": str(int(now + self.store.ttl_seconds))}}
        if turns is not None:
            update += ", turns = :turns"
            values[":turns"] = {"N": turns}
        return {
            "Key": _key(conversation_id, META),
            "UpdateExpression": update,
            # Never recreate a conversation deleted meanwhile.
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": values,
        }

    def release(self, conversation_id: str) -> None:
        """Let the next answer in, with no turns added."""
        with contextlib.suppress(ClientError):
            self.store.call("update_item", **self._release(conversation_id, None))

    def delete(self, conversation_id: str) -> None:
        """Delete the conversation: its meta item first, so it is gone at once, then its turns."""
        self.store.call("delete_item", Key=_key(conversation_id, META))
        query: dict = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"c#{conversation_id}"}},
            "ProjectionExpression": "pk, sk",
        }
        while True:
            answer = self.store.call("query", **query)
            for item in answer.get("Items", []):
                self.store.call("delete_item", Key={"pk": item["pk"], "sk": item["sk"]})
            if "LastEvaluatedKey" not in answer:
                return
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def of(self, owner: str, limit: int = 50) -> list[dict]:
        """Return the owner's conversations, the most recently used first."""
        answer = self.store.call(
            "query",
            IndexName="ConversationsByOwner",
            KeyConditionExpression="convOwner = :owner",
            ExpressionAttributeValues={":owner": {"S": owner}},
            ScanIndexForward=False,
            Limit=limit,
        )
        now = self.clock()
        return [
            {
                "conversationId": item["pk"]["S"].removeprefix("c#"),
                "title": item.get("title", {}).get("S", ""),
                "turns": int(item["turns"]["N"]),
                "updatedAt": int(item["updatedAt"]["N"]),
            }
            for item in answer.get("Items", [])
            if int(item["expiresAt"]["N"]) > now
        ]


class Keeper(Listener):
    """Stores an exchange in its conversation once the answer ends, before the client is sent the end."""

    def __init__(
        self, conversations: Conversations, conversation_id: str, first: int, prompt: str, owner: str | None
    ):
        self.conversations = conversations
        self.conversation_id = conversation_id
        self.first = first
        self.prompt = prompt
        self.owner = owner  # set for a new conversation, created with its first exchange
        self._events: list[Event] = []
        self._done = False
        self._unfreed = False  # the hold could not be freed at the end: try again at close

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
            exchange = [{"role": "user", "content": self.prompt}, reply]
            conversations, prompt = self.conversations, self.prompt
            writes = conversations.record(self.conversation_id, self.first, exchange, self.owner, prompt)
            summary.store_requests = (summary.store_requests or 0) + writes
        except StoreError:
            # Not kept; the hold is freed when the response closes, or lapses by itself.
            self._unfreed = self.owner is None
            logger.warning("conversation %s: the exchange was not stored", self.conversation_id)

    def on_close(self, summary: Summary) -> None:  # noqa: ARG002 - the listener interface
        if not self._done or self._unfreed:
            self.abandon()

    def abandon(self) -> None:
        """The answer will not be kept (it never started or ended, or failed to store): free the hold."""
        self._done = True
        self._unfreed = False
        self._free()

    def _free(self) -> None:
        if self.owner is None:
            with contextlib.suppress(StoreError):
                self.conversations.release(self.conversation_id)
