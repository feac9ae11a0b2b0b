"""What the demo knows: counts, recent scrapes of the worker's metrics and shoppers' latest lists,
and the rates and latency quantiles over the last few seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from models.events import Event, EventType
from streams.tools.processes import (
    BATCH_SIZE,
    CONSUMED,
    LATENCY,
    PUBLISHED,
    REDIS_RTT,
    MetricsSnapshot,
    bucket_delta,
    histogram_quantile,
)

WINDOW_S: Final = 5.0  # rates and latency quantiles cover the last few seconds

SHOWN_USERS: Final = 4
ACTIONS_PER_USER: Final = 64

VERBS: Final[Mapping[EventType, str]] = {
    EventType.VIEW: "viewed",
    EventType.LIKE: "liked",
    EventType.SHARE: "shared",
    EventType.CART: "carted",
    EventType.PURCHASE: "bought",
    EventType.HIDE: "hid",
}


@dataclass(frozen=True)
class WindowStats:
    """Rates and quantiles over the span between two scrapes."""

    seconds: float
    consumed_per_s: float
    published_per_s: float
    p50_s: float | None
    p99_s: float | None
    mean_batch: float | None
    mean_redis_s: float | None

    @classmethod
    def between(cls, old: MetricsSnapshot, new: MetricsSnapshot) -> WindowStats:
        dt = max(new.at - old.at, 1e-9)

        def delta(name: str) -> float:
            return new.total(name) - old.total(name)

        latency = bucket_delta(new.buckets(LATENCY), old.buckets(LATENCY))
        batches = delta(f"{BATCH_SIZE}_count")
        redis_calls = delta(f"{REDIS_RTT}_count")
        return cls(
            seconds=dt,
            consumed_per_s=delta(CONSUMED) / dt,
            published_per_s=delta(PUBLISHED) / dt,
            p50_s=histogram_quantile(0.5, latency),
            p99_s=histogram_quantile(0.99, latency),
            mean_batch=delta(f"{BATCH_SIZE}_sum") / batches if batches else None,
            mean_redis_s=delta(f"{REDIS_RTT}_sum") / redis_calls if redis_calls else None,
        )


# --- what the screen shows ---------------------------------------------------------------------


@dataclass
class ShownItem:
    item_id: str
    score: float
    source: str
    reasons: list[str]  # the user's own items behind an item-CF score
    people: list[str] = field(default_factory=list)  # social proof, already worded


#: How a social reason reads on screen, by action.
SOCIAL_WORDING = {
    "share": "shared with you by {}",
    "purchase": "{} bought it",
    "like": "{} liked it",
}


def _social_phrase(reason: Mapping[str, Any]) -> str:
    wording = SOCIAL_WORDING.get(str(reason.get("action")), "{} did")
    return wording.format(reason.get("user_id"))


@dataclass
class UserRecs:
    user_id: str
    items: list[ShownItem]
    cold_start: bool
    trigger: str
    received: float  # time.monotonic()
    updates: int = 0


@dataclass
class Board:
    """The demo's model of the world: counts, recent scrapes and users' latest lists."""

    titles: Mapping[str, str]
    sent: int = 0
    recs_received: int = 0
    users: dict[str, UserRecs] = field(default_factory=dict)
    actions: dict[str, OrderedDict[str, str]] = field(default_factory=dict)
    scrapes: deque[MetricsSnapshot] = field(default_factory=lambda: deque(maxlen=64))
    sent_marks: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    started: float = field(default_factory=time.monotonic)

    def on_sent(self, event: Event) -> None:
        """Remember what each user did to each item, to word the "because you …" reasons."""
        self.sent += 1
        verb = VERBS.get(event.type)
        if verb is None or event.item_id is None:
            return
        done = self.actions.setdefault(event.user_id, OrderedDict())
        done[event.item_id] = verb
        done.move_to_end(event.item_id)
        if len(done) > ACTIONS_PER_USER:
            done.popitem(last=False)

    def on_recommendations(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            body = orjson.loads(value)
            user_id = str(body["user_id"])
            items = [
                ShownItem(
                    item_id=str(it["item_id"]),
                    score=float(it["score"]),
                    source=str(it["source"]),
                    reasons=[str(r["item_id"]) for r in it.get("reasons", ()) if "item_id" in r],
                    people=[_social_phrase(r) for r in it.get("reasons", ()) if "user_id" in r],
                )
                for it in body["items"]
            ]
            trigger = str(body.get("trigger", {}).get("event_id", ""))
            cold = bool(body.get("cold_start", False))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # the screen shows well-formed lists; the contract tests police the rest
        self.recs_received += 1
        previous = self.users.get(user_id)
        self.users[user_id] = UserRecs(
            user_id,
            items,
            cold,
            trigger,
            time.monotonic(),
            (previous.updates if previous else 0) + 1,
        )

    def note_scrape(self, snap: MetricsSnapshot) -> None:
        self.scrapes.append(snap)
        self.sent_marks.append((snap.at, self.sent))

    def window(self) -> tuple[WindowStats | None, float | None]:
        """Stats over the last ``WINDOW_S`` seconds of scrapes, and the simulator's send rate."""
        if len(self.scrapes) < 2:
            return None, None
        new = self.scrapes[-1]
        old = next((s for s in self.scrapes if new.at - s.at <= WINDOW_S + 0.5), self.scrapes[0])
        if old is new:
            old = self.scrapes[-2]
        marks = [m for m in self.sent_marks if m[0] >= old.at]
        sent_rate = None
        if len(marks) >= 2 and marks[-1][0] > marks[0][0]:
            sent_rate = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
        return WindowStats.between(old, new), sent_rate

    def shown_users(self) -> list[UserRecs]:
        """The most active shoppers (most updates): stable rows whose contents keep changing."""
        ranked = sorted(self.users.values(), key=lambda u: (-u.updates, u.user_id))
        return sorted(ranked[:SHOWN_USERS], key=lambda u: u.user_id)

    def because(
        self, user_id: str, source: str, reasons: Sequence[str], people: Sequence[str] = ()
    ) -> str:
        if people:
            return "; ".join(people[:2])
        if not reasons:
            return {"popular": "popular today", "trending": "trending right now"}.get(source, "")
        done: Mapping[str, str] = self.actions.get(user_id, {})
        parts = []
        for item_id in reasons[:2]:
            verb = done.get(item_id)
            name = self.title(item_id, 36)  # with the id: the simulator reuses titles
            parts.append(f"you {verb} {name}" if verb else name)
        return "because " + "; ".join(parts)

    def title(self, item_id: str, width: int = 40) -> str:
        title = self.titles.get(item_id)
        if title is None:
            return item_id
        text = f"{title} ({item_id})"
        return (
            text
            if len(text) <= width
            else title[: max(8, width - len(item_id) - 4)] + f"… ({item_id})"
        )
