"""Per-caller limits, kept in the store: how many streams a caller has open, and its output tokens a day."""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from botocore.exceptions import ClientError

from .errors import Refusal
from .events import Event, Reasoning, Summary, Text
from .relay import Listener
from .store import Store, StoreDown, StoreError

logger = logging.getLogger(__name__)
SORT = "usage"
# Each admission reads the caller's item, then writes it if no other admission wrote it since;
# a caller's streams starting in the same instant may each need a fresh read, a moment apart.
ADMIT_ATTEMPTS = 6
# A caller's item outlives its last use by this long; TTL then deletes it for free.
KEEP_SECONDS = 3 * 86_400
SETTLE_ATTEMPTS = 3
DELTAS = (Text, Reasoning)


def _key(who: str) -> dict:
    return {"pk": {"S": f"u#{who}"}, "sk": {"S": SORT}}


def day_of(moment: float) -> str:
    """The UTC day a moment falls in, as the counters name it: 2026-12-05."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")


def _tokens_attribute(day: str) -> str:
    return f"out:{day}"


def seconds_to_midnight(moment: float) -> int:
    """Whole seconds, rounded up, until the next UTC day begins and every budget renews."""
    now = datetime.fromtimestamp(moment, UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    return max(1, math.ceil((midnight - now).total_seconds()))


@dataclass
class Standing:
    """One caller's item as read: its version, its open streams' slots, and today's output tokens."""

    version: int = 0
    slots: dict[str, float] = field(default_factory=dict)  # stream id -> when its slot expires
    has_slots: bool = False
    tokens_today: int = 0
    expired: list[str] = field(default_factory=list)  # slots to drop: their streams' time is up
    past_days: list[str] = field(default_factory=list)  # counters to drop: older than yesterday

    def live(self, now: float) -> dict[str, float]:
        return {stream: until for stream, until in self.slots.items() if until > now}


class Quotas:
    """Admits a caller's stream, or refuses it with 429; counts its output tokens when it ends."""

    def __init__(
        self,
        store: Store,
        max_streams: int,
        daily_tokens: int,
        retry_after_seconds: int,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.max_streams = max_streams  # 0: not limited, but still counted for /usage
        self.daily_tokens = daily_tokens  # 0: not limited, but still counted
        self.retry_after_seconds = retry_after_seconds
        self.clock = clock

    def standing(self, who: str) -> Standing:
        """Read a caller's item, strongly consistent: another environment may have written it just now."""
        item = self.store.call("get_item", Key=_key(who), ConsistentRead=True).get("Item", {})
        now = self.clock()
        today = _tokens_attribute(day_of(now))
        slots = {name: float(value["N"]) for name, value in item.get("slots", {}).get("M", {}).items()}
        # Yesterday's count is kept a day, for a stream that ends after midnight; older ones go.
        kept = (today, _tokens_attribute(day_of(now - 86_400)))
        return Standing(
            version=int(item.get("ver", {}).get("N", "0")),
            slots=slots,
            has_slots="slots" in item,
            tokens_today=int(item.get(today, {}).get("N", "0")),
            expired=[name for name, until in slots.items() if until <= now],
            past_days=[name for name in item if name.startswith("out:") and name not in kept],
        )

    def admit(self, who: str, stream_id: str, until: float) -> Lease:
        """Hold a slot for the stream until it ends (or `until`, if its process dies first), or refuse.

        A store that cannot be reached costs the limits, never the stream: it is let through.
        """
        requests = 0  # DynamoDB requests, for the log line's storeRequests
        try:
            self.store.check_up()
            for attempt in range(ADMIT_ATTEMPTS):
                if attempt:
                    time.sleep(random.uniform(0.01, 0.05) * attempt)  # apart from the others
                requests += 1
                standing = self.standing(who)
                self._check(standing)
                requests += 1
                if self._take(who, stream_id, until, standing):
                    return Lease(self, who, stream_id, held=True, requests=requests)
        except StoreError as exc:
            if not isinstance(exc, StoreDown):  # one not tried: the store's own warning said why
                logger.warning("per-caller limits are not applied to this stream: %s", exc)
            return Lease(self, who, stream_id, held=False, requests=requests)
        message = "too many of your streams are starting at once; send again in a moment"
        raise Refusal(429, "too_many_streams", message, {"Retry-After": "1"})

    def _check(self, standing: Standing) -> None:
        now = self.clock()
        if self.daily_tokens and standing.tokens_today >= self.daily_tokens:
            message = (
                f"your output tokens today ({standing.tokens_today}) reached the daily budget of "
                f"{self.daily_tokens}; it renews at 00:00 UTC"
            )
            # Retrying before then cannot succeed: OpenAI's SDKs read x-should-retry.
            headers = {"Retry-After": str(seconds_to_midnight(now)), "x-should-retry": "false"}
            raise Refusal(429, "budget_exhausted", message, headers)
        live = standing.live(now)
        if self.max_streams and len(live) >= self.max_streams:
            # A stream usually ends well before its slot would expire; a crashed one's frees by then.
            wait = min(self.retry_after_seconds, math.ceil(min(live.values()) - now))
            message = (
                f"{len(live)} of your streams are open, the most allowed at once "
                f"({self.max_streams}); send again when one ends"
            )
            raise Refusal(429, "too_many_streams", message, {"Retry-After": str(max(1, wait))})

    def _take(self, who: str, stream_id: str, until: float, standing: Standing) -> bool:
        """Write the slot if the item is as read; False if another stream changed it first."""
        names = {"#slot": stream_id}
        values: dict = {
            ":until": {"N": str(math.ceil(until))},
            ":version": {"N": str(standing.version + 1)},
            ":expires": {"N": str(int(self.clock() + KEEP_SECONDS))},
        }
        if standing.has_slots:
            sets = ["slots.#slot = :until"]
        else:
            sets = ["slots = :slots"]
            values[":slots"] = {"M": {stream_id: values.pop(":until")}}
            names = {}
        update = f"SET {', '.join(sets)}, ver = :version, expiresAt = :expires"
        # Stream ids and day names are not DynamoDB identifiers: each goes by an alias.
        expired = {f"#expired{index}": name for index, name in enumerate(standing.expired)}
        past = {f"#past{index}": name for index, name in enumerate(standing.past_days)}
        if expired or past:
            update += f" REMOVE {', '.join([f'slots.{alias}' for alias in expired] + list(past))}"
            names.update(expired | past)
        if standing.version:
            condition, values[":read"] = "ver = :read", {"N": str(standing.version)}
        else:
            # No admission has written it yet (a settle alone may have made it).
            condition = "attribute_not_exists(ver)"
        try:
            self._update(who, update, names, values, ConditionExpression=condition)
        except ClientError:  # the condition: someone wrote between the read and this write
            return False
        return True

    def _update(self, who: str, update: str, names: dict, values: dict, **condition: str) -> None:
        self.store.call(
            "update_item",
            Key=_key(who),
            UpdateExpression=update,
            ExpressionAttributeValues=values,
            **({"ExpressionAttributeNames": names} if names else {}),
            **condition,
        )

    def settle(self, who: str, stream_id: str, held: bool, tokens: int) -> None:
        """Free the stream's slot and add its output tokens to the day it ended on, in one write.

        Only admissions move the version: a slot freed under one can only make it refuse too
        soon, never admit too many. A held slot's write is conditional on the slot, so a retry
        of a write that landed (its answer lost) cannot count the tokens twice.
        """
        day = _tokens_attribute(day_of(self.clock()))
        names = {"#day": day}
        values = {":tokens": {"N": str(tokens)}, ":expires": {"N": str(int(self.clock() + KEEP_SECONDS))}}
        update = "ADD #day :tokens SET expiresAt = :expires"
        if not held:
            self._update(who, update, names, values)
            return
        names["#slot"] = stream_id
        # A failed condition: already settled, by an attempt whose answer was lost.
        with contextlib.suppress(ClientError):
            condition = "attribute_exists(slots.#slot)"
            self._update(who, f"{update} REMOVE slots.#slot", names, values, ConditionExpression=condition)


class Lease(Listener):
    """One stream's slot: freed, and its tokens counted, as its end is sent; else when it closes."""

    def __init__(self, quotas: Quotas, who: str, stream_id: str, held: bool, requests: int):
        self.quotas = quotas
        self.who = who
        self.stream_id = stream_id
        self.held = held
        self.requests = requests
        self.settled = False
        self.characters = 0  # of the text relayed: the count for a stream Bedrock never counted

    def on_events(self, events: list[Event]) -> None:
        # Only with limits on; one pass over the batch, no call per token.
        self.characters += sum(len(event.text) for event in events if type(event) in DELTAS)

    def on_end(self, summary: Summary) -> None:
        # Before the client's end: on Lambda, the environment may be frozen once the response ends.
        # A store taken to be down is left for after the response, not to hold the end back.
        if not self.quotas.store.down:
            self._settle(summary, attempts=1)

    def on_close(self, summary: Summary) -> None:
        self._settle(summary, attempts=SETTLE_ATTEMPTS)

    def release(self) -> None:
        """Free the slot of a stream that never started (its Bedrock call failed)."""
        self._settle(Summary(), attempts=SETTLE_ATTEMPTS)

    def _settle(self, summary: Summary, attempts: int) -> None:
        if self.settled:
            return
        # Bedrock's count when it sent one. A cancelled or cut stream has none: it is estimated at
        # four characters a token, and never fewer tokens than the deltas relayed.
        estimate = max(summary.deltas, math.ceil(self.characters / 4))
        tokens = summary.usage.output_tokens if summary.usage else estimate
        for attempt in range(attempts):
            try:
                self.requests += 1
                self.quotas.settle(self.who, self.stream_id, self.held, tokens)
                self.settled = True
                summary.store_requests = (summary.store_requests or 0) + self.requests
                return
            except StoreError as exc:
                logger.warning("stream %s: its slot not freed yet: %s", self.stream_id, exc)
                if attempt + 1 < attempts:
                    time.sleep(0.25 * 2**attempt)
        # The slot expires by itself when the stream's time would have run out.
