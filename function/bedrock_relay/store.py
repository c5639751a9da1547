"""The stream store: streams' events and their cancel flag, kept in DynamoDB for any process to read."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import aws
from .events import Delta, Reasoning, Summary, Text
from .settings import Settings

logger = logging.getLogger(__name__)
# Items stay well under DynamoDB's 400 KB limit, names and values together.
MAX_ITEM_BYTES = 350_000
META, END = "m", "e"
LIVE, ENDED = "live", "ended"
_SEQ_DIGITS = 10
# After the store fails outright (no answer in time, or a 5xx), what a first token waits on skips it:
# a store that hangs must not add its timeouts to every first token. One such call this often
# still tries, and any answer to a call made after the failure ends the wait.
PROBE_SECONDS = 5.0


class StoreError(Exception):
    """DynamoDB could not be reached, or refused the request."""


class StoreDown(StoreError):
    """DynamoDB failed outright a moment ago, and this call was not tried."""


def make_client(settings: Settings) -> Any:
    """Build the DynamoDB client; its endpoint comes from AWS_ENDPOINT_URL_DYNAMODB, as the SDK reads it."""
    config = Config(
        region_name=settings.region,
        # Short: a slow store must cost a stream a retry, never a long wait.
        connect_timeout=2,
        read_timeout=3,
        retries={"mode": "standard", "total_max_attempts": 2},
        # Every stream thread may write at once.
        max_pool_connections=settings.web_threads + 4,
    )
    return aws.session().create_client("dynamodb", config=config)


def stream_key(stream_id: str, sort: str) -> dict:
    return {"pk": {"S": f"s#{stream_id}"}, "sk": {"S": sort}}


def batch_sort_key(last_seq: int) -> str:
    """A batch is keyed by its last delta's number, so `sk >= b#N` finds every batch holding N or later."""
    return f"b#{last_seq:0{_SEQ_DIGITS}d}"


def encode(event: Delta) -> list:
    """Return a delta as a short JSON-able list."""
    return ["t" if type(event) is Text else "r", event.seq, event.text]


def decode(item: list) -> Delta:
    """Return the delta a stored list stands for."""
    tag, seq, text = item
    return (Text if tag == "t" else Reasoning)(seq, text)


def end_record(summary: Summary, last_seq: int) -> dict:
    """Return what a reader needs to end its copy of the stream exactly as the original ended."""
    return {
        "stopReason": summary.stop_reason,
        "usage": list(summary.usage) if summary.usage else None,
        "ttftMs": summary.ttft_ms,
        "durationMs": summary.duration_ms,
        "failure": list(summary.failure) if summary.failure else None,
        "outcome": summary.outcome,
        "lastSeq": last_seq,
    }


def chunks(deltas: list[Delta]) -> Iterable[tuple[int, int, str]]:
    """Split a flush of deltas into items under the size limit: (first seq, last seq, JSON) each."""
    part: list[list] = []
    size = 0
    for delta in deltas:
        encoded = encode(delta)
        # Counted as UTF-8 with JSON's escapes at worst (6 bytes a character), plus the framing.
        length = 6 * len(delta.text) + 24
        if part and size + length > MAX_ITEM_BYTES:
            yield part[0][1], part[-1][1], json.dumps(part, ensure_ascii=False, separators=(",", ":"))
            part, size = [], 0
        part.append(encoded)
        size += length
    if part:
        yield part[0][1], part[-1][1], json.dumps(part, ensure_ascii=False, separators=(",", ":"))


class Store:
    """One table of streams: each has a meta item, batches of events, and an end item."""

    def __init__(
        self,
        client: Any,
        table: str,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
        probe_seconds: float = PROBE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        self.table = table
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.probe_seconds = probe_seconds
        self.monotonic = monotonic
        # Whether the store is taken to be down, shared by every thread's calls.
        self._health = threading.Lock()
        self._failed_at: float | None = None  # when the latest call that failed outright began, while down
        self._answered_at = 0.0  # when the latest call that was answered began
        self._probe_at = 0.0  # when a call a first token waits on may next try a store taken to be down

    def call(self, operation: str, **kwargs: Any) -> dict:
        if operation != "transact_write_items":  # whose actions name their own table
            kwargs["TableName"] = self.table
        started = self.monotonic()
        try:
            answer = getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                self._failed(started, code)
            else:
                self._answered(started)  # a refusal (a condition, a throttle) is an answer
            if code == "ConditionalCheckFailedException":
                raise
            raise StoreError(f"DynamoDB {operation}: {code}") from exc
        except BotoCoreError as exc:
            self._failed(started, exc)
            raise StoreError(f"DynamoDB {operation}: {exc}") from exc
        self._answered(started)
        return answer

    # Calls are judged by when they began: one that began before the latest answered call is old
    # news when it fails, and one that began before the latest failure says nothing when answered.
    def _failed(self, started: float, cause: object) -> None:
        """Take the store to be down, until a call that begins after this one is answered."""
        with self._health:
            if started < self._answered_at:
                return
            if self._failed_at is None:
                logger.warning("the store is taken to be down: %s", cause)
                self._probe_at = self.monotonic() + self.probe_seconds
            self._failed_at = started if self._failed_at is None else max(self._failed_at, started)

    def _answered(self, started: float) -> None:
        with self._health:
            self._answered_at = max(self._answered_at, started)
            if self._failed_at is not None and started > self._failed_at:
                self._failed_at = None
                logger.warning("the store answers again")

    @property
    def down(self) -> bool:
        """Whether the store failed outright, and no call that began since has been answered."""
        return self._failed_at is not None

    def check_up(self) -> None:
        """Raise StoreDown at once while the store is taken to be down, for a call a first token waits
        on; one such call every `probe_seconds` is let through, to find out whether it is back."""
        if self._failed_at is None:
            return
        with self._health:
            now = self.monotonic()
            if now < self._probe_at:
                raise StoreDown("DynamoDB failed a moment ago; not tried again yet")
            self._probe_at = now + self.probe_seconds

    def transact(self, actions: list[dict]) -> None:
        """Write several items, all or none: each action is {"Put": {...}} or {"Update": {...}}."""
        for action in actions:
            next(iter(action.values()))["TableName"] = self.table
        self.call("transact_write_items", TransactItems=actions)

    def _expiry(self) -> dict:
        return {"N": str(int(self.clock() + self.ttl_seconds))}

    def open_stream(self, stream_id: str, owner: str, model_id: str, live_until: float) -> None:
        """Record a new stream: whose it is, its model, and until when its generator may still write."""
        item = {
            **stream_key(stream_id, META),
            "owner": {"S": owner},
            "modelId": {"S": model_id},
            "state": {"S": LIVE},
            "liveUntil": {"N": str(int(live_until) + 1)},
            "expiresAt": self._expiry(),
        }
        # A conditional failure means it is written already, by an attempt whose answer was lost.
        with contextlib.suppress(ClientError):
            self.call("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)")

    def append(self, stream_id: str, deltas: list[Delta]) -> None:
        """Store a flush of deltas, in as many items as their size needs."""
        for first, last, payload in chunks(deltas):
            item = {
                **stream_key(stream_id, batch_sort_key(last)),
                "first": {"N": str(first)},
                "ev": {"S": payload},
                "expiresAt": self._expiry(),
            }
            self.call("put_item", Item=item)

    def finish(self, stream_id: str, record: dict) -> None:
        """Store the stream's end, then mark it ended."""
        item = {**stream_key(stream_id, END), "end": {"S": json.dumps(record)}, "expiresAt": self._expiry()}
        self.call("put_item", Item=item)
        self._update_meta(stream_id, "SET #state = :ended", {":ended": {"S": ENDED}}, {"#state": "state"})

    def mark_lost(self, stream_id: str) -> None:
        """Record that the stream could not be stored whole, so readers are told it cannot be resumed."""
        self._update_meta(stream_id, "SET lost = :yes", {":yes": {"BOOL": True}})

    def _update_meta(self, stream_id: str, update: str, values: dict, names: dict | None = None) -> None:
        """Update a stream's meta item if it exists: never create one without an owner (never recorded)."""
        with contextlib.suppress(ClientError):
            self.call(
                "update_item",
                Key=stream_key(stream_id, META),
                UpdateExpression=update,
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=values,
                **({"ExpressionAttributeNames": names} if names else {}),
            )

    def cancelled(self, stream_id: str) -> bool:
        """Tell whether someone asked to stop the stream: one strongly consistent read."""
        answer = self.call(
            "get_item", Key=stream_key(stream_id, META), ConsistentRead=True, ProjectionExpression="cancelled"
        )
        return "cancelled" in answer.get("Item", {})

    def meta(self, stream_id: str, owner: str) -> dict | None:
        """Return the stream's meta item as plain values; None if unknown, expired, or someone else's."""
        answer = self.call("get_item", Key=stream_key(stream_id, META), ConsistentRead=True)
        item = answer.get("Item")
        # TTL deletes within days, not at once: an expired item is as good as gone.
        if not item or int(item["expiresAt"]["N"]) <= self.clock() or item["owner"]["S"] != owner:
            return None
        return {
            "modelId": item["modelId"]["S"],
            "state": item["state"]["S"],
            "cancelled": "cancelled" in item,
            "lost": "lost" in item,
            "liveUntil": int(item["liveUntil"]["N"]),
        }

    def end(self, stream_id: str) -> dict | None:
        """Return the stream's stored end, or None if it has none (yet)."""
        answer = self.call("get_item", Key=stream_key(stream_id, END), ConsistentRead=True)
        item = answer.get("Item")
        return json.loads(item["end"]["S"]) if item else None

    def cancel(self, stream_id: str) -> bool:
        """Mark a live stream cancelled; False if it had already ended."""
        try:
            self.call(
                "update_item",
                Key=stream_key(stream_id, META),
                UpdateExpression="SET cancelled = :yes",
                ConditionExpression="#state = :live",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":yes": {"BOOL": True}, ":live": {"S": LIVE}},
            )
        except ClientError:
            return False
        return True

    def read(self, stream_id: str, after_seq: int) -> tuple[list[list[Delta]], dict | None]:
        """Return the stored batches holding deltas after `after_seq`, in order, and the end if stored."""
        batches: list[list[Delta]] = []
        end = None
        for item in self.query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues={
                ":pk": {"S": f"s#{stream_id}"},
                ":low": {"S": batch_sort_key(after_seq + 1)},
                ":high": {"S": END},
            },
            ConsistentRead=True,
        ):
            if item["sk"]["S"] == END:
                end = json.loads(item["end"]["S"])
            else:
                batches.append([decode(entry) for entry in json.loads(item["ev"]["S"])])
        return batches, end

    def query(self, **query: Any) -> Iterator[dict]:
        """Yield every item a query finds, page after page."""
        while True:
            answer = self.call("query", **query)
            yield from answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
