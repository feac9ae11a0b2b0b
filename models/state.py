"""The recommender's state machine: how one event changes user history, co-occurrence,
similarity, popularity and the follow graph.

:class:`MemoryState` is the pure reference implementation. ``streams.store.RedisStore`` runs
the same transitions atomically inside Redis (one Lua script per batch); the store contract
suite (tests/contract) feeds both the same events and requires identical snapshots. Evaluation
replays events through this class in-process.

Orderings copy Redis sorted sets exactly (score, then member bytes), so trimming evicts the
same members in both implementations.

>>> from models.events import Event, EventType
>>> state = MemoryState(StateParams())
>>> ev = Event("e1", EventType.VIEW, "u1", 1_700_000_000.0, item_id="a")
>>> state.apply(ev), state.apply(ev)
(<Outcome.APPLIED: 'applied'>, <Outcome.DUPLICATE: 'duplicate'>)
>>> _ = state.apply(Event("e2", EventType.CART, "u1", 1_700_000_001.0, item_id="b"))
>>> state.similarity("a", "b") > 0
True
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from models.events import DEFAULT_WEIGHTS, Event, EventType
from models.popularity import forward_weight, needs_rebase, rebase_factor
from models.shrinkage import ShrinkageEstimator
from models.similarity import affinity_after, cosine
from models.topk import top_k

#: Social signals kept per user: shares received (inbox) and own likes/purchases that people
#: who follow the user see (actions). Bounded: the most recent ones are what persuade.
INBOX_SIZE = 50
ACTIONS_SIZE = 20
FOLLOWEES_READ = 50  # followees whose actions one read looks at
ACTIONS_READ = 5  # latest actions read per followee
SOCIAL_ACTION_TYPES = frozenset({EventType.LIKE, EventType.PURCHASE})

#: Events that also lift an earlier "hide": the user has clearly changed their mind.
UNHIDING_TYPES = frozenset({EventType.LIKE, EventType.SHARE, EventType.CART, EventType.PURCHASE})


#: Sums at or below this are zero: every contribution has been taken back out. (With the
#: default integer weights the sums are exact; the margin covers fractional weights.)
ZERO = 1e-9


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    #: Refused by a store whose stored data for the event is corrupt (only Redis can be).
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class StateParams:
    """Sizes and weights of the state. Both store implementations take the same values."""

    weights: Mapping[EventType, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    history_size: int = 30
    neighbours: int = 50
    cooccurrence_cap: int = 500
    dedupe_window: int = 10_000
    affinity_cap: float = 15.0
    half_life_s: float = 6 * 3600.0
    popularity_cap: int = 10_000
    seen_window_s: float = 30 * 86400.0  # items touched this recently are never recommended
    seen_cap: int = 500  # ... up to this many of them per user
    shrinkage: float = 1000.0  # λ in s = dot / (‖i‖·‖j‖ + λ): see models.similarity.cosine
    # > 0: λ is learned instead, this many times the mean ‖i‖² (models.shrinkage); 0: fixed λ.
    shrinkage_scale: float = 0.0

    def weight(self, event_type: EventType) -> float:
        return float(self.weights.get(event_type, DEFAULT_WEIGHTS[event_type]))


@dataclass(frozen=True, slots=True)
class SocialProof:
    """Someone the user knows acted on an item: shared it with them, or (a followee) bought
    or liked it."""

    item_id: str
    user_id: str
    action: str  # "share" (to this user), "purchase" or "like" (by someone they follow)
    ts: float


@dataclass(frozen=True, slots=True)
class UserView:
    """Everything scoring needs about one user, read in the same round trip as the update."""

    user_id: str
    recent: tuple[tuple[str, float], ...]  # (item, affinity), most recent first
    neighbours: Mapping[str, tuple[tuple[str, float], ...]]  # recent item -> [(item, s)]
    seen: frozenset[str]
    bought: frozenset[str]
    hidden: frozenset[str]
    social: tuple[SocialProof, ...] = ()  # sorted by (item, user, action)


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What an erasure removed (counts only: the receipt must not repeat the user's data)."""

    history_items: int
    logged_events: int
    follow_edges: int


@dataclass(frozen=True, slots=True)
class PopularView:
    """The most popular items (stored forward-decayed scores) and the landmark they use."""

    items: tuple[tuple[str, float], ...]
    landmark: float


class SortedSet:
    """A minimal Redis sorted set: same ordering (score, then member), same eviction."""

    __slots__ = ("scores",)

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.scores)

    def incr(self, member: str, amount: float) -> float:
        value = self.scores.get(member, 0.0) + amount
        self.scores[member] = value
        return value

    # Redis orders equal scores by the members' bytes; for UTF-8 that is the order of the
    # code points, which is how Python compares str. So (score, member) tuples, compared in C,
    # give Redis's order without a Python key function (these are the reference store's hot
    # spots: every event and every request sorts some set).
    def pop_min(self) -> tuple[str, float]:
        _, member = min(zip(self.scores.values(), self.scores, strict=True))
        return member, self.scores.pop(member)

    def ordered(self) -> list[str]:
        """Members lowest first (Redis ZRANGE order)."""
        return [member for _, member in sorted(zip(self.scores.values(), self.scores, strict=True))]

    def trim_to(self, size: int) -> list[str]:
        """Evict the lowest members until at most ``size`` remain; return them."""
        evicted = []
        while len(self.scores) > size:
            evicted.append(self.pop_min()[0])
        return evicted

    def top(self, count: int) -> list[tuple[str, float]]:
        """Highest first, ties by member descending (Redis ZREVRANGE order).

        >>> s = SortedSet(); s.scores.update({"b": 1.0, "a": 1.0, "c": 2.0})
        >>> s.top(2)
        [('c', 2.0), ('b', 1.0)]
        """
        return top_k(self.scores, count, ties_descending=True)


class BoundedSet(SortedSet):
    """A :class:`SortedSet` trimmed to a cap after each insertion (co-occurrence counts):
    once full, every new member evicts the lowest, and a scan for it on every event was the
    reference store's hottest loop. A lazy min-heap of (score, member) finds it in O(log n):
    every write pushes an entry, an entry whose score is no longer the member's is skipped
    when it surfaces, and the heap is rebuilt when stale entries outnumber live ones. Write
    scores only through :meth:`incr` and :meth:`set` (a direct write to ``scores`` would
    escape the heap), and remove members only through :meth:`discard` and :meth:`pop_min`.

    >>> s = BoundedSet()
    >>> for member, score in [("a", 3.0), ("b", 1.0), ("c", 2.0)]:
    ...     s.set(member, score)
    >>> s.trim_to(2), s.incr("c", 5.0), s.trim_to(1)
    (['b'], 7.0, ['a'])
    """

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[float, str]] | None = None  # built at the first eviction

    def incr(self, member: str, amount: float) -> float:
        value = super().incr(member, amount)
        if self._heap is not None:
            self._push(value, member)
        return value

    def set(self, member: str, score: float) -> None:
        self.scores[member] = score
        if self._heap is not None:
            self._push(score, member)

    def discard(self, member: str) -> None:
        self.scores.pop(member, None)

    def _push(self, score: float, member: str) -> None:
        heap = self._heap
        assert heap is not None
        if len(heap) > 2 * len(self.scores) + 64:
            self._rebuild()
        else:
            heapq.heappush(heap, (score, member))

    def _rebuild(self) -> None:
        # Every current (score, member) once: the heap's invariant starts over.
        self._heap = [(score, member) for member, score in self.scores.items()]
        heapq.heapify(self._heap)

    def pop_min(self) -> tuple[str, float]:
        if self._heap is None:
            self._rebuild()
        heap, scores = self._heap, self.scores
        assert heap is not None
        while True:
            score, member = heapq.heappop(heap)
            if scores.get(member) == score:  # the member's current score: the true minimum
                del scores[member]
                return member, score


class RankedSet(SortedSet):
    """A small capped :class:`SortedSet` kept in order as it changes (similarity
    neighbours): every request reads the top of the neighbour sets of the user's recent items,
    and they change with nearly every event, so sorting them on each read was the replay's
    hottest selection. A list of (score, member), lowest first, mirrors ``scores``; a write
    moves one entry by bisection, an eviction takes the list's head and :meth:`top` reads its
    tail. For large sets that are written far more than read (co-occurrence counts),
    :class:`BoundedSet`'s heap is cheaper. Write scores only through :meth:`incr` and
    :meth:`set` and remove members only through :meth:`discard`, :meth:`pop_min` and
    :meth:`trim_to` (a direct write to ``scores`` would escape the order).

    >>> s = RankedSet()
    >>> for member, score in [("a", 3.0), ("b", 1.0), ("c", 2.0)]:
    ...     s.set(member, score)
    >>> s.trim_to(2), s.incr("c", 5.0), s.top(5), s.trim_to(1)
    (['b'], 7.0, [('c', 7.0), ('a', 3.0)], ['a'])
    """

    __slots__ = ("_order",)

    def __init__(self) -> None:
        super().__init__()
        # (score, member) ascending: Redis's order, compared in C. Scores are finite here
        # (counts and cosines), which bisection needs.
        self._order: list[tuple[float, str]] = []

    def incr(self, member: str, amount: float) -> float:
        value = self.scores.get(member, 0.0) + amount
        self.set(member, value)
        return value

    def set(self, member: str, score: float) -> None:
        order, old = self._order, self.scores.get(member)
        if old is not None:
            del order[bisect_left(order, (old, member))]
        insort(order, (score, member))
        self.scores[member] = score

    def discard(self, member: str) -> None:
        old = self.scores.pop(member, None)
        if old is not None:
            del self._order[bisect_left(self._order, (old, member))]

    def pop_min(self) -> tuple[str, float]:
        score, member = self._order.pop(0)
        del self.scores[member]
        return member, score

    def trim_to(self, size: int) -> list[str]:
        excess = len(self._order) - size
        if excess <= 0:
            return []
        evicted = [member for _, member in self._order[:excess]]
        del self._order[:excess]
        for member in evicted:
            del self.scores[member]
        return evicted

    def ordered(self) -> list[str]:
        return [member for _, member in self._order]

    def top(self, count: int) -> list[tuple[str, float]]:
        if count <= 0:
            return []
        return [(member, score) for score, member in reversed(self._order[-count:])]


@dataclass
class UserState:
    history: SortedSet = field(default_factory=SortedSet)  # item -> last event time
    affinity: dict[str, float] = field(default_factory=dict)  # item -> a_ui (> 0 only)
    seen_events: SortedSet = field(default_factory=SortedSet)  # event_id -> ts (dedupe)
    # event_id -> (weight, item) of events that added to popularity, so erasure can undo them.
    event_log: dict[str, tuple[float, str]] = field(default_factory=dict)
    bought: set[str] = field(default_factory=set)
    hidden: set[str] = field(default_factory=set)
    following: set[str] = field(default_factory=set)
    followers: set[str] = field(default_factory=set)
    inbox: SortedSet = field(default_factory=SortedSet)  # "sharer<TAB>item" shared -> ts
    outbox: set[str] = field(default_factory=set)  # users this user shared with (for erasure)
    senders: set[str] = field(default_factory=set)  # users who shared with this user (ditto)
    actions: SortedSet = field(default_factory=SortedSet)  # "type<TAB>item" -> ts
    seen_items: SortedSet = field(default_factory=SortedSet)  # item touched -> last ts

    def is_empty(self) -> bool:
        return not (
            self.history.scores
            or self.affinity
            or self.seen_events.scores
            or self.event_log
            or self.bought
            or self.hidden
            or self.following
            or self.followers
            or self.inbox.scores
            or self.outbox
            or self.senders
            or self.actions.scores
            or self.seen_items.scores
        )


class MemoryState:
    """The pure reference implementation of the recommender's state transitions."""

    def __init__(self, params: StateParams) -> None:
        self.params = params
        self.users: dict[str, UserState] = {}
        self.dot: dict[str, BoundedSet] = {}  # item -> co-occurring item -> dot product
        self.sim: dict[str, RankedSet] = {}  # item -> neighbour -> cosine (top-k kept)
        self.norm2 = SortedSet()  # item -> Σ a_ui²
        self.popularity = SortedSet()  # item -> forward-decayed weighted count
        self.landmark: float | None = None
        # λ scaled to the observed norms, when asked for (None: the fixed params.shrinkage).
        self.learned_shrinkage = (
            ShrinkageEstimator(params.shrinkage_scale) if params.shrinkage_scale > 0 else None
        )

    @property
    def shrinkage(self) -> float:
        """The λ in use: learned from the norms, or the fixed one."""
        learned = self.learned_shrinkage
        return self.params.shrinkage if learned is None else learned.value

    # ---- updates ---------------------------------------------------------------------------
    def apply_batch(self, events: Iterable[Event]) -> list[Outcome]:
        return [self.apply(event) for event in events]

    def apply(self, event: Event) -> Outcome:
        user = self._user(event.user_id)
        if event.event_id in user.seen_events.scores:
            return Outcome.DUPLICATE
        user.seen_events.scores[event.event_id] = event.ts
        for forgotten in user.seen_events.trim_to(self.params.dedupe_window):
            user.event_log.pop(forgotten, None)
        if event.event_id not in user.seen_events.scores:
            # Older than the user's whole dedupe window: a replay from beyond it, not news.
            return Outcome.DUPLICATE

        if event.type is EventType.FOLLOW and event.target_user_id is not None:
            user.following.add(event.target_user_id)
            self._user(event.target_user_id).followers.add(event.user_id)
        elif event.type is EventType.UNFOLLOW and event.target_user_id is not None:
            user.following.discard(event.target_user_id)
            self._user(event.target_user_id).followers.discard(event.user_id)
        elif event.item_id is not None:
            self._apply_item_event(user, event, event.item_id)
        return Outcome.APPLIED

    def _apply_item_event(self, user: UserState, event: Event, item: str) -> None:
        weight = self.params.weight(event.type)
        if event.type is EventType.PURCHASE:
            user.bought.add(item)
        if event.type is EventType.HIDE:
            user.hidden.add(item)
        elif event.type in UNHIDING_TYPES:
            user.hidden.discard(item)
        previous = user.seen_items.scores.get(item)
        user.seen_items.scores[item] = event.ts if previous is None else max(previous, event.ts)
        cutoff = event.ts - self.params.seen_window_s
        for stale in [i for i, ts in user.seen_items.scores.items() if ts < cutoff]:
            del user.seen_items.scores[stale]
        user.seen_items.trim_to(self.params.seen_cap)
        if event.type in SOCIAL_ACTION_TYPES:
            user.actions.scores[f"{event.type.value}\t{item}"] = event.ts
            user.actions.trim_to(ACTIONS_SIZE)
        recipient_id = event.target_user_id
        if event.type is EventType.SHARE and recipient_id and recipient_id != event.user_id:
            recipient = self._user(recipient_id)
            recipient.inbox.scores[f"{event.user_id}\t{item}"] = event.ts
            recipient.inbox.trim_to(INBOX_SIZE)
            user.outbox.add(recipient_id)
            recipient.senders.add(event.user_id)

        old = user.affinity.get(item, 0.0)
        new = affinity_after(old, weight, cap=self.params.affinity_cap)
        delta = new - old
        if delta != 0.0:
            self._add_norm2(item, new * new - old * old)
            touched = [other for other in user.history.ordered() if other != item]
            affinity = user.affinity
            # Redis-sorted-set order (time, then id) so both stores evict identically.
            self._add_dots(item, [(other, delta * affinity[other]) for other in touched])
            self._refresh_similarities(item, touched)

        if new > 0.0:
            previous = user.history.scores.get(item)
            user.history.scores[item] = event.ts if previous is None else max(previous, event.ts)
            user.affinity[item] = new
        else:
            # Affinity 0: the pair updates above already brought its contributions to zero.
            user.history.scores.pop(item, None)
            user.affinity.pop(item, None)
        while len(user.history) > self.params.history_size:
            self._withdraw(user, user.history.pop_min()[0])

        if weight > 0.0:
            user.event_log[event.event_id] = (weight, item)
            self._add_popularity(item, weight, event.ts)

    def _withdraw(self, user: UserState, item: str) -> None:
        """Take the user's contributions for ``item`` back out of the counts.

        Used when an item leaves the user's history window and on erasure, so the counts are
        always exactly the sums over the users' *current* windows: bounded, recency-weighted,
        and erasable without a trace.
        """
        user.history.scores.pop(item, None)
        affinity = user.affinity.pop(item)
        self._add_norm2(item, -affinity * affinity)
        touched = []
        for other in user.history.ordered():
            if self._subtract_dot(item, other, affinity * user.affinity[other]):
                touched.append(other)
        self._refresh_similarities(item, touched)

    def _add_norm2(self, item: str, amount: float) -> None:
        old = self.norm2.scores.get(item, 0.0)
        new = self.norm2.incr(item, amount)
        if new <= ZERO:
            del self.norm2.scores[item]
        if self.learned_shrinkage is not None:
            self.learned_shrinkage.update(old, new)

    def _subtract_dot(self, item: str, other: str, amount: float) -> bool:
        """Remove one user's share of a pair; False if the cap had already evicted the pair."""
        row = self.dot.get(item)
        if row is None or other not in row.scores:
            return False
        remaining = self.dot[item].incr(other, -amount)
        self.dot[other].incr(item, -amount)
        if remaining <= ZERO:
            self._forget_pair(item, other)
        return True

    def _add_dots(self, item: str, amounts: list[tuple[str, float]]) -> None:
        """Add ``amount`` to the dot product of (item, other) for each pair, in order: every
        pair an event touches (up to history_size), lookups hoisted out of the loop."""
        if not amounts:
            return
        dot_sets, cap, forget = self.dot, self.params.cooccurrence_cap, self._forget_pair
        item_dots = self._bounded(dot_sets, item)
        for other, amount in amounts:
            other_dots = self._bounded(dot_sets, other)
            value = item_dots.incr(other, amount)
            other_dots.incr(item, amount)
            if value <= ZERO:  # every contribution withdrawn (e.g. a hide): the pair is gone
                forget(item, other)
                continue
            # Trim after both increments so an eviction always removes the pair both ways.
            if len(item_dots.scores) > cap:
                for evicted in item_dots.trim_to(cap):
                    forget(item, evicted)
            if len(other_dots.scores) > cap:
                for evicted in other_dots.trim_to(cap):
                    forget(other, evicted)

    @staticmethod
    def _bounded(sets: dict[str, BoundedSet], item: str) -> BoundedSet:
        found = sets.get(item)
        if found is None:
            found = sets[item] = BoundedSet()
        return found

    def _forget_pair(self, a: str, b: str) -> None:
        """Drop every trace of the pair (a, b) after a was evicted from b's counts or back."""
        for x, y in ((a, b), (b, a)):
            if x in self.dot:
                self.dot[x].discard(y)
            if x in self.sim:
                self.sim[x].discard(y)

    def _refresh_similarities(self, item: str, others: list[str]) -> None:
        """Recompute s(item, other) for each pair an event touched (up to history_size),
        both directions: one cosine per pair (it is symmetric), lookups hoisted out of the
        loop."""
        if not others:
            return
        row = self.dot.get(item)
        dots = {} if row is None else row.scores
        norm2 = self.norm2.scores
        norm2_item = norm2.get(item, 0.0)
        shrinkage, cap = self.shrinkage, self.params.neighbours
        sim_sets = self.sim
        item_sims = sim_sets.get(item)
        if item_sims is None:
            item_sims = sim_sets[item] = RankedSet()
        for other in others:
            other_sims = sim_sets.get(other)
            if other_sims is None:
                other_sims = sim_sets[other] = RankedSet()
            dot = dots.get(other)
            s = 0.0 if dot is None else cosine(dot, norm2_item, norm2.get(other, 0.0), shrinkage)
            if s > 0.0:
                item_sims.set(other, s)
                item_sims.trim_to(cap)
                other_sims.set(item, s)
                other_sims.trim_to(cap)
            else:
                item_sims.discard(other)
                other_sims.discard(item)

    def _add_popularity(self, item: str, weight: float, ts: float) -> None:
        half_life = self.params.half_life_s
        if self.landmark is None:
            self.landmark = ts
        elif needs_rebase(ts=ts, landmark=self.landmark, half_life_s=half_life):
            factor = rebase_factor(
                old_landmark=self.landmark, new_landmark=ts, half_life_s=half_life
            )
            for member in self.popularity.scores:
                self.popularity.scores[member] *= factor
            self.landmark = ts
        self.popularity.incr(
            item, forward_weight(weight, ts=ts, landmark=self.landmark, half_life_s=half_life)
        )
        self.popularity.trim_to(self.params.popularity_cap)

    def _user(self, user_id: str) -> UserState:
        state = self.users.get(user_id)
        if state is None:
            state = self.users[user_id] = UserState()
        return state

    def erase(self, user_id: str) -> ErasureReport:
        """Remove ``user_id`` from every derived state (the right to be forgotten).

        Exact for co-occurrence and norms (the user's window is withdrawn pair by pair),
        popularity (each logged contribution is subtracted at the current landmark), the
        follow graph (both directions) and everything keyed by the user. Not recoverable:
        pairs or popular items that the caps evicted *because of* the user's activity, and
        popularity from events older than the dedupe window (their log entries are gone).
        Similarity lists are recomputed for the pairs the user touched; like all of them they
        reflect the norms current when they were last refreshed.
        """
        user = self.users.get(user_id)
        if user is None:
            return ErasureReport(0, 0, 0)
        items = user.history.ordered()
        for item in items:
            self._withdraw(user, item)
        for event_id in user.seen_events.ordered():
            logged = user.event_log.get(event_id)
            if logged is not None:
                self._subtract_popularity(logged[1], logged[0], user.seen_events.scores[event_id])
        for recipient_id in user.outbox:
            recipient = self.users.get(recipient_id)
            if recipient is None:
                continue
            recipient.senders.discard(user_id)
            for key in [k for k in recipient.inbox.scores if k.startswith(f"{user_id}\t")]:
                del recipient.inbox.scores[key]
        for sender in user.senders:
            if sender in self.users:
                self.users[sender].outbox.discard(user_id)
        for followee in user.following:
            if followee in self.users:
                self.users[followee].followers.discard(user_id)
        for follower in user.followers:
            if follower in self.users:
                self.users[follower].following.discard(user_id)
        del self.users[user_id]
        return ErasureReport(len(items), len(user.event_log), len(user.following | user.followers))

    def _subtract_popularity(self, item: str, weight: float, ts: float) -> None:
        if item not in self.popularity.scores or self.landmark is None:
            return
        amount = forward_weight(
            weight, ts=ts, landmark=self.landmark, half_life_s=self.params.half_life_s
        )
        if self.popularity.incr(item, -amount) <= amount * ZERO:
            del self.popularity.scores[item]

    # ---- reads -----------------------------------------------------------------------------
    def user_view(
        self,
        user_id: str,
        *,
        recent_items: int,
        neighbours: int,
        social_items: int = 20,
        followee_items: int = 0,
    ) -> UserView:
        """What scoring needs about ``user_id`` (an unknown user gets an empty view).

        Social proof: the ``social_items`` latest shares received, and the 5 latest likes or
        purchases of each of up to 50 people the user follows (by id order here; Redis picks
        an arbitrary 50 when there are more); with ``followee_items``, also each such
        followee's latest ``followee_items`` items of any kind from their history (action
        ``"recent"``, unless that followee's like or purchase of it is already there): on a
        stream where people mostly view or rate, what friends touched is the social signal.
        """
        user = self.users.get(user_id) or UserState()
        recent = [(item, user.affinity[item]) for item, _ in user.history.top(recent_items)]
        proofs = []
        for key, ts in user.inbox.top(social_items):
            sharer, _, item = key.partition("\t")
            proofs.append(SocialProof(item, sharer, "share", ts))
        for followee in sorted(user.following)[:FOLLOWEES_READ]:
            state = self.users.get(followee)
            if state is not None:
                acted = set()
                for key, ts in state.actions.top(ACTIONS_READ):
                    action, _, item = key.partition("\t")
                    proofs.append(SocialProof(item, followee, action, ts))
                    acted.add(item)
                if followee_items:
                    for item, ts in state.history.top(followee_items):
                        if item not in acted:
                            proofs.append(SocialProof(item, followee, "recent", ts))
        return UserView(
            user_id=user_id,
            recent=tuple(recent),
            neighbours={
                item: tuple(self.sim[item].top(neighbours)) if item in self.sim else ()
                for item, _ in recent
            },
            seen=frozenset(user.seen_items.scores),
            bought=frozenset(user.bought),
            hidden=frozenset(user.hidden),
            social=tuple(sorted(proofs, key=lambda p: (p.item_id, p.user_id, p.action))),
        )

    def popular(self, count: int) -> PopularView:
        return PopularView(tuple(self.popularity.top(count)), self.landmark or 0.0)

    def similarity(self, a: str, b: str) -> float:
        """s_ab from the current counts (symmetric by construction)."""
        row = self.dot.get(a)
        dot = 0.0 if row is None else row.scores.get(b, 0.0)
        return cosine(
            dot, self.norm2.scores.get(a, 0.0), self.norm2.scores.get(b, 0.0), self.shrinkage
        )

    # ---- inspection ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, object]:
        """Every piece of state as plain data; the Redis store produces the same shape."""
        users: dict[str, object] = {}
        for user_id, user in self.users.items():
            if user.is_empty():
                continue
            users[user_id] = {
                "history": dict(user.history.scores),
                "affinity": dict(user.affinity),
                "seen_events": dict(user.seen_events.scores),
                "event_log": {k: f"{w!r}\t{i}" for k, (w, i) in user.event_log.items()},
                "bought": set(user.bought),
                "hidden": set(user.hidden),
                "following": set(user.following),
                "followers": set(user.followers),
                "inbox": dict(user.inbox.scores),
                "outbox": set(user.outbox),
                "senders": set(user.senders),
                "actions": dict(user.actions.scores),
                "seen_items": dict(user.seen_items.scores),
            }
        return {
            "users": users,
            "dot": {k: dict(v.scores) for k, v in self.dot.items() if v.scores},
            "sim": {k: dict(v.scores) for k, v in self.sim.items() if v.scores},
            "norm2": dict(self.norm2.scores),
            "popularity": dict(self.popularity.scores),
            "landmark": self.landmark,
        }
