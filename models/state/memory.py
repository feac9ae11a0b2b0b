"""The pure reference implementation of the state transitions (see :mod:`models.state`):
what ``streams/lua/state.lua`` mirrors inside Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from models.events import Event, EventType
from models.popularity import merged_top
from models.sortedset import SortedSet
from models.state.plan import FRESH, admit, event_item, scored_at, touch
from models.state.steps import popularity_step, withdrawal
from models.state.views import (
    ACTIONS_READ,
    ACTIONS_SIZE,
    FOLLOWEES_READ,
    INBOX_SIZE,
    SOCIAL_ACTION_TYPES,
    UNHIDING_TYPES,
    ErasureReport,
    Outcome,
    PopularView,
    Similar,
    SocialProof,
    StateParams,
    UserState,
    UserView,
)

#: What an event does to another user than its own (the target): a share lands in their inbox
#: and senders, a follow or unfollow in their followers.
Kind = Literal["share", "follow", "unfollow"]


class MemoryState:
    """The pure reference implementation of the recommender's state transitions.

    ``partition_of(user)``: the partition whose step owns the user's state (Redis's slots,
    streams/keys.py). What an event does to a target in another partition waits in
    :attr:`relayed` until :meth:`deliver` (Redis relays it after the batch's steps and reads:
    streams/store/relay.py), and popularity is kept per partition, each with its landmark, and
    summed by :meth:`popular`; without it there is one partition (0).
    """

    def __init__(
        self, params: StateParams, partition_of: Callable[[str], int] | None = None
    ) -> None:
        self.params = params
        self.users: dict[str, UserState] = {}
        #: Per partition: item -> forward-decayed weighted count, and the landmark.
        self.popularities: dict[int, SortedSet] = {}
        self.landmarks: dict[int, float] = {}
        self.partition_of = partition_of
        #: Target-side changes not delivered yet: (kind, target, user, item, ts), in order.
        self.relayed: list[tuple[Kind, str, str, str, float]] = []

    # ---- updates ---------------------------------------------------------------------------
    def apply_batch(self, events: Iterable[Event]) -> list[Outcome]:
        return [self.apply(event) for event in events]

    def apply(self, event: Event) -> Outcome:
        user = self._user(event.user_id)
        if admit(user.seen_events, event, self.params) != FRESH:
            return Outcome.DUPLICATE
        item = event_item(event)
        if event.type is EventType.FOLLOW and event.target_user_id is not None:
            user.following.add(event.target_user_id)
            self._affect("follow", event.target_user_id, event.user_id, "", event.ts)
        elif event.type is EventType.UNFOLLOW and event.target_user_id is not None:
            user.following.discard(event.target_user_id)
            self._affect("unfollow", event.target_user_id, event.user_id, "", event.ts)
        elif item is not None:
            self._apply_item_event(user, event, item, self.params.weight(event.type))
        return Outcome.APPLIED

    @property
    def popularity(self) -> SortedSet:
        """The popularity of partition 0 (to read): all of it, without ``partition_of``."""
        return self.popularities.get(0) or SortedSet()

    @property
    def landmark(self) -> float | None:
        """The landmark of partition 0's popularity."""
        return self.landmarks.get(0)

    def _partition(self, user_id: str) -> int:
        return 0 if self.partition_of is None else self.partition_of(user_id)

    def _affect(self, kind: Kind, target: str, user: str, item: str, ts: float) -> None:
        """The event's change to its target: now, or relayed if the target is elsewhere."""
        where = self.partition_of
        if where is not None and where(user) != where(target):
            self.relayed.append((kind, target, user, item, ts))
        else:
            self._to_target(kind, target, user, item, ts)

    def _to_target(self, kind: Kind, target_id: str, user: str, item: str, ts: float) -> None:
        target = self._user(target_id)
        if kind == "share":
            target.inbox.scores[f"{user}\t{item}"] = ts
            target.inbox.trim_to(INBOX_SIZE)
            target.senders.add(user)
        elif kind == "follow":
            target.followers.add(user)
        else:
            target.followers.discard(user)

    def deliver(self) -> None:
        """Apply the relayed target-side changes, in the order their events came."""
        relayed, self.relayed = self.relayed, []
        for change in relayed:
            self._to_target(*change)

    def _apply_item_event(self, user: UserState, event: Event, item: str, weight: float) -> None:
        if event.type is EventType.PURCHASE:
            user.bought.add(item)
        if event.type is EventType.HIDE:
            user.hidden.add(item)
        elif event.type in UNHIDING_TYPES:
            user.hidden.discard(item)
        at = scored_at(event.ts)
        previous = user.seen_items.scores.get(item)
        user.seen_items.scores[item] = at if previous is None else max(previous, at)
        cutoff = event.ts - self.params.seen_window_s
        for stale in [i for i, ts in user.seen_items.scores.items() if ts < cutoff]:
            del user.seen_items.scores[stale]
        user.seen_items.trim_to(self.params.seen_cap)
        if event.type in SOCIAL_ACTION_TYPES:
            user.actions.scores[f"{event.type.value}\t{item}"] = at
            user.actions.trim_to(ACTIONS_SIZE)
        recipient_id = event.target_user_id
        if event.type is EventType.SHARE and recipient_id and recipient_id != event.user_id:
            user.outbox.add(recipient_id)
            self._affect("share", recipient_id, event.user_id, item, event.ts)

        touch(user.history, user.affinity, item, weight, at, self.params)

        if weight > 0.0:
            partition = self._partition(event.user_id)
            (amount,) = self.open_step(partition, [event])  # a step's own: already open
            self.popularities.setdefault(partition, SortedSet()).incr(item, amount)
            self.popularities[partition].trim_to(self.params.popularity_cap)

    def open_step(self, partition: int, events: Sequence[Event]) -> list[float]:
        """Move the partition's landmark (and rescale its popularity) for a step of
        ``events`` (models/state/steps.py); returns what each adds to its item's popularity.
        A store opens each partition's step with all of its events, as Redis's script is
        handed them; a lone :meth:`apply` opens a step of its one event."""
        step = popularity_step(self.params, self.landmarks.get(partition), events)
        if step.factor is not None and (popularity := self.popularities.get(partition)):
            for member in popularity.scores:
                popularity.scores[member] *= step.factor
        if step.landmark is not None:
            self.landmarks[partition] = step.landmark
        return step.amounts

    def _user(self, user_id: str) -> UserState:
        state = self.users.get(user_id)
        if state is None:
            state = self.users[user_id] = UserState()
        return state

    def erase(self, user_id: str) -> ErasureReport:
        """Remove ``user_id`` from every derived state (the right to be forgotten).

        Exact for popularity (each logged contribution is subtracted at the current
        landmark), the follow graph (both directions) and everything keyed by the user.
        Not recoverable: popular items that the cap evicted *because of* the user's
        activity, and popularity from events older than the dedupe window (their log entries
        are gone). Item-CF forgets the user on its own (:meth:`Cooccurrence.erase`).
        """
        user = self.users.get(user_id)
        if user is None:
            return ErasureReport(0, 0, 0)
        items = user.history.ordered()
        partition = self._partition(user_id)
        logged = user.seen_events.logged()
        for item, weight, ts in logged:
            self._subtract_popularity(partition, item, weight, ts)
        for other_id in user.outbox | user.senders | user.following | user.followers:
            if (other := self.users.get(other_id)) is not None:
                self._forget(other, user_id)
        del self.users[user_id]
        return ErasureReport(len(items), len(logged), len(user.following | user.followers))

    @staticmethod
    def _forget(other: UserState, user_id: str) -> None:
        """Take an erased user out of everything of another user that names them (Redis
        relays the same to users of other partitions)."""
        for names in (other.senders, other.outbox, other.followers, other.following):
            names.discard(user_id)
        for key in [k for k in other.inbox.scores if k.startswith(f"{user_id}\t")]:
            del other.inbox.scores[key]

    def _subtract_popularity(self, partition: int, item: str, weight: float, ts: float) -> None:
        popularity, landmark = self.popularities.get(partition), self.landmarks.get(partition)
        if popularity is None or landmark is None or item not in popularity.scores:
            return
        amount, zero = withdrawal(self.params, landmark, weight=weight, ts=ts)
        if popularity.incr(item, -amount) <= zero:
            del popularity.scores[item]

    # ---- reads -----------------------------------------------------------------------------
    def user_view(
        self,
        user_id: str,
        *,
        recent_items: int,
        neighbours: int,
        social_items: int = 20,
        followee_items: int = 0,
        similar: Similar | None = None,
    ) -> UserView:
        """What scoring needs about ``user_id`` (an unknown user gets an empty view).

        Social proof: the ``social_items`` latest shares received, and the 5 latest likes or
        purchases of each of up to 50 people the user follows (by id order here; Redis picks
        an arbitrary 50 when there are more); with ``followee_items``, also each such
        followee's latest ``followee_items`` items of any kind from their history (action
        ``"recent"``, unless that followee's like or purchase of it is already there): on a
        stream where people mostly view or rate, what friends touched is the social signal.
        ``similar(item, k)`` gives each recent item's neighbours (item-CF's, kept apart from
        this state: :class:`models.cooccurrence.Cooccurrence`); none without it.
        """
        user = self.users.get(user_id) or UserState()
        if recent_items <= 0:  # only what excludes items (the learner's read)
            return UserView(
                user_id, (), {}, frozenset(user.seen_items.scores), frozenset(user.bought),
                frozenset(user.hidden),
            )  # fmt: skip
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
                item: () if similar is None else similar(item, neighbours) for item, _ in recent
            },
            seen=frozenset(user.seen_items.scores),
            bought=frozenset(user.bought),
            hidden=frozenset(user.hidden),
            social=tuple(sorted(proofs, key=lambda p: (p.item_id, p.user_id, p.action))),
        )

    def popular(self, count: int) -> PopularView:
        """The ``count`` most popular items over every partition (:func:`merged_top`)."""
        if count <= 0:
            return PopularView((), self.landmarks.get(0, 0.0))
        parts = [
            (self.popularities[p].top(count), self.landmarks[p])
            for p in sorted(self.popularities)
            if p in self.landmarks
        ]
        return PopularView(*merged_top(parts, count, self.params.half_life_s))

    # ---- inspection ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, object]:
        """Every piece of state as plain data; the Redis store produces the same shape."""
        users: dict[str, object] = {}
        for user_id, user in self.users.items():
            if user.is_empty():
                continue
            users[user_id] = user.plain()
        return {
            "users": users,
            # Partitions by their number as text, as Redis's keys name them.
            "popularity": {
                str(p): dict(s.scores) for p, s in self.popularities.items() if s.scores
            },
            "landmark": {str(p): landmark for p, landmark in self.landmarks.items()},
        }
