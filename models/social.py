"""Social commerce signals: items shared with you, and items the people you follow bought or
liked, each candidate carrying its proof ("shared with you by A", "bought by B and C").

State, all keyed by user id so every piece of a user is findable:

* ``following[u][v]`` / ``followers[v][u]``: the follow graph, both directions, value = since.
  A user follows at most ``max_following`` people (the oldest follow is dropped beyond that).
* ``actions[u]``: u's ``actions_per_user`` most recent broadcastable actions (by default
  purchases and likes; carts and views stay private), one per (item, type).
* ``inbox[r]``: the ``shares_per_user`` most recent shares r received, one per (sharer, item).
* ``outbox[s][r]``: how many of s's shares sit in r's inbox, so erasing s finds them without
  scanning every inbox.

Candidates are computed on read (fan-in): the user's inbox plus the recent actions of the
people they follow. Nothing is copied into followers' feeds, so an unfollow or an erasure
takes effect at once, and a popular account's purchase costs nothing per follower.
A proof's value is its weight decayed by age, ``w · 2^(−age / half_life_s)``; anything older
than ``max_age_s`` no longer counts and :meth:`SocialGraph.expire` deletes it.

>>> g = SocialGraph()
>>> g.follow("cy", "bob", ts=0.0); g.follow("cy", "dee", ts=0.0)
>>> _ = g.record_action("bob", "sneakers", EventType.PURCHASE, ts=100.0)
>>> _ = g.record_action("dee", "sneakers", EventType.PURCHASE, ts=200.0)
>>> _ = g.record_share("ann", "cy", "lipstick", ts=300.0)
>>> [(c.item_id, describe(c)) for c in g.candidates("cy", k=5, now=300.0)]
[('sneakers', 'bought by dee and bob, whom you follow'), ('lipstick', 'shared with you by ann')]
>>> g.unfollow("cy", "bob"); [describe(c) for c in g.candidates("cy", k=5, now=300.0)]
['shared with you by ann', 'bought by dee, whom you follow']
>>> g.forget_user("ann"); g.inbox, g.outbox
({}, {})
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from models.events import Event, EventType

#: What followers see, and how much each counts. Carts and views are private intent.
DEFAULT_ACTION_WEIGHTS: Mapping[EventType, float] = MappingProxyType(
    {EventType.PURCHASE: 8.0, EventType.LIKE: 3.0}
)

_VERBS = {EventType.PURCHASE: "bought", EventType.LIKE: "liked", EventType.CART: "carted"}


@dataclass(frozen=True, slots=True)
class Action:
    item_id: str
    action: EventType
    ts: float


@dataclass(frozen=True, slots=True)
class Share:
    sharer: str
    item_id: str
    ts: float


@dataclass(frozen=True, slots=True)
class Proof:
    """Who did what: ``action`` is SHARE for "shared with you", else the followee's action."""

    user_id: str
    action: EventType
    ts: float


@dataclass(frozen=True, slots=True)
class SocialCandidate:
    item_id: str
    score: float  # Σ decayed weights of every proof
    proof: tuple[Proof, ...]  # the strongest proofs first, at most proofs_per_item


def describe(candidate: SocialCandidate) -> str:
    """Human-readable proof, strongest first: shares, then what followees did."""
    parts = []
    sharers = [p.user_id for p in candidate.proof if p.action is EventType.SHARE]
    if sharers:
        parts.append(f"shared with you by {_and(sharers)}")
    for action, verb in _VERBS.items():
        users = [p.user_id for p in candidate.proof if p.action is action]
        if users:
            parts.append(f"{verb} by {_and(users)}, whom you follow")
    return "; ".join(parts)


def _and(names: list[str]) -> str:
    unique = list(dict.fromkeys(names))
    return unique[0] if len(unique) == 1 else ", ".join(unique[:-1]) + " and " + unique[-1]


_V = TypeVar("_V", int, float)
_E = TypeVar("_E", Action, Share)


class SocialGraph:
    """Follow graph, received shares and broadcast actions; social candidates with proof."""

    def __init__(
        self,
        *,
        half_life_s: float = 3 * 86400.0,
        max_age_s: float = 30 * 86400.0,
        max_following: int = 500,
        actions_per_user: int = 20,
        shares_per_user: int = 50,
        proofs_per_item: int = 3,
        action_weights: Mapping[EventType, float] = DEFAULT_ACTION_WEIGHTS,
        share_weight: float = 10.0,
    ) -> None:
        if half_life_s <= 0 or max_age_s <= 0:
            raise ValueError("half_life_s and max_age_s must be positive")
        if min(max_following, actions_per_user, shares_per_user, proofs_per_item) < 1:
            raise ValueError("every size cap must be at least 1")
        self.half_life_s = half_life_s
        self.max_age_s = max_age_s
        self.max_following = max_following
        self.actions_per_user = actions_per_user
        self.shares_per_user = shares_per_user
        self.proofs_per_item = proofs_per_item
        self.action_weights = {t: w for t, w in action_weights.items() if w > 0}
        self.share_weight = share_weight
        self.following: dict[str, dict[str, float]] = {}
        self.followers: dict[str, dict[str, float]] = {}
        self.actions: dict[str, list[Action]] = {}  # oldest first
        self.inbox: dict[str, list[Share]] = {}  # oldest first
        self.outbox: dict[str, dict[str, int]] = {}

    # ---- updates ---------------------------------------------------------------------------
    def follow(self, user_id: str, followee: str, ts: float) -> None:
        if user_id == followee:
            return
        following = self.following.setdefault(user_id, {})
        following[followee] = max(following.get(followee, ts), ts)
        self.followers.setdefault(followee, {})[user_id] = following[followee]
        while len(following) > self.max_following:
            oldest = min(following, key=lambda v: (following[v], v))
            self.unfollow(user_id, oldest)

    def unfollow(self, user_id: str, followee: str) -> None:
        _pop_nested(self.following, user_id, followee)
        _pop_nested(self.followers, followee, user_id)

    def record_share(self, sharer: str, recipient: str, item_id: str, ts: float) -> bool:
        """Put the share in the recipient's inbox (a repeat of the same item by the same sharer
        only refreshes its time); True if stored."""
        if sharer == recipient:
            return False
        inbox = self.inbox.setdefault(recipient, [])
        repeat = next(
            (n for n, s in enumerate(inbox) if (s.sharer, s.item_id) == (sharer, item_id)), None
        )
        if repeat is not None:
            ts = max(ts, inbox.pop(repeat).ts)
        else:
            sent = self.outbox.setdefault(sharer, {})
            sent[recipient] = sent.get(recipient, 0) + 1
        share = Share(sharer, item_id, ts)
        _insert_by_time(inbox, share)
        while len(inbox) > self.shares_per_user:
            self._drop_share(recipient, inbox.pop(0))
        return share in inbox  # a late share older than a full inbox is dropped at once

    def record_action(self, user_id: str, item_id: str, event_type: EventType, ts: float) -> bool:
        """Remember a broadcastable action (see ``action_weights``); True if stored."""
        if event_type not in self.action_weights:
            return False
        actions = self.actions.setdefault(user_id, [])
        for n, act in enumerate(actions):
            if (act.item_id, act.action) == (item_id, event_type):
                ts = max(ts, actions.pop(n).ts)
                break
        action = Action(item_id, event_type, ts)
        _insert_by_time(actions, action)
        del actions[: -self.actions_per_user]
        return action in actions

    def apply_event(self, event: Event) -> None:
        """Route one event: follow/unfollow edges, shares to the inbox, actions to the feed."""
        if event.type is EventType.FOLLOW and event.target_user_id is not None:
            self.follow(event.user_id, event.target_user_id, event.ts)
        elif event.type is EventType.UNFOLLOW and event.target_user_id is not None:
            self.unfollow(event.user_id, event.target_user_id)
        elif event.item_id is not None:
            if event.type is EventType.SHARE and event.target_user_id is not None:
                self.record_share(event.user_id, event.target_user_id, event.item_id, event.ts)
            self.record_action(event.user_id, event.item_id, event.type, event.ts)

    def expire(self, now: float) -> int:
        """Delete actions and shares older than ``max_age_s``; return how many. O(entries)."""
        cutoff = now - self.max_age_s
        dropped = 0
        for user_id in list(self.actions):
            actions = self.actions[user_id]
            keep = [a for a in actions if a.ts >= cutoff]
            dropped += len(actions) - len(keep)
            if keep:
                self.actions[user_id] = keep
            else:
                del self.actions[user_id]
        for recipient in list(self.inbox):
            for share in [s for s in self.inbox[recipient] if s.ts < cutoff]:
                self.inbox[recipient].remove(share)
                self._drop_share(recipient, share)
                dropped += 1
            if not self.inbox[recipient]:
                del self.inbox[recipient]
        return dropped

    def forget_user(self, user_id: str) -> None:
        """Erase the user: follow edges both ways, shares sent and received, their actions."""
        for followee in list(self.following.get(user_id, ())):
            self.unfollow(user_id, followee)
        for follower in list(self.followers.get(user_id, ())):
            self.unfollow(follower, user_id)
        self.actions.pop(user_id, None)
        for share in self.inbox.pop(user_id, []):
            self._drop_share(user_id, share)
        for recipient in self.outbox.pop(user_id, {}):
            kept = [s for s in self.inbox.get(recipient, []) if s.sharer != user_id]
            if kept:
                self.inbox[recipient] = kept
            else:
                self.inbox.pop(recipient, None)

    # ---- reads -----------------------------------------------------------------------------
    def candidates(
        self, user_id: str, k: int, exclude: Collection[str] = frozenset(), *, now: float
    ) -> list[SocialCandidate]:
        """Items shared with the user or acted on by people they follow, scored by decayed
        weight (ties by item id), each with its strongest proofs."""
        parts: dict[str, list[tuple[float, Proof]]] = {}

        def offer(item_id: str, weight: float, proof: Proof) -> None:
            age = max(0.0, now - proof.ts)  # a clock-skewed future event counts as new
            if item_id in exclude or age > self.max_age_s:
                return
            value = weight * math.pow(2.0, -age / self.half_life_s)
            parts.setdefault(item_id, []).append((value, proof))

        for share in self.inbox.get(user_id, ()):
            offer(share.item_id, self.share_weight, Proof(share.sharer, EventType.SHARE, share.ts))
        for followee in self.following.get(user_id, {}):
            for act in self.actions.get(followee, ()):
                offer(
                    act.item_id,
                    self.action_weights[act.action],
                    Proof(followee, act.action, act.ts),
                )
        scored = [(math.fsum(v for v, _ in p), item_id) for item_id, p in parts.items()]
        best = heapq.nsmallest(k, scored, key=lambda s: (-s[0], s[1]))
        result = []
        for score, item_id in best:
            ranked = sorted(parts[item_id], key=lambda vp: (-vp[0], vp[1].user_id, vp[1].action))
            proof = tuple(p for _, p in ranked[: self.proofs_per_item])
            result.append(SocialCandidate(item_id, score, proof))
        return result

    def snapshot(self) -> dict[str, object]:
        """Every piece of state as plain data."""
        return {
            "following": {u: dict(v) for u, v in self.following.items()},
            "followers": {u: dict(v) for u, v in self.followers.items()},
            "actions": {
                u: [[a.item_id, str(a.action), a.ts] for a in acts]
                for u, acts in self.actions.items()
            },
            "inbox": {
                r: [[s.sharer, s.item_id, s.ts] for s in shares] for r, shares in self.inbox.items()
            },
            "outbox": {s: dict(r) for s, r in self.outbox.items()},
        }

    # ---- internals -------------------------------------------------------------------------
    def _drop_share(self, recipient: str, share: Share) -> None:
        """Keep ``outbox`` equal to the count of the sharer's shares in each inbox."""
        sent = self.outbox.get(share.sharer)
        if sent is None or recipient not in sent:
            return
        sent[recipient] -= 1
        if sent[recipient] <= 0:
            _pop_nested(self.outbox, share.sharer, recipient)


def _pop_nested(table: dict[str, dict[str, _V]], outer: str, inner: str) -> None:
    row = table.get(outer)
    if row is not None:
        row.pop(inner, None)
        if not row:
            del table[outer]


def _insert_by_time(entries: list[_E], entry: _E) -> None:
    """Keep lists oldest first even when an event arrives late, so trimming drops the oldest."""
    bisect.insort_right(entries, entry, key=lambda e: e.ts)
