"""What the people a user follows did lately, weighted by how well each of them has predicted
the user: the ``followees`` source of the learned blend.

Social proof (:mod:`models.state`) shows a followee's latest likes and purchases; on a stream
of ratings or views most of what friends do is neither, and a user who follows fifty people
does not follow all fifty alike. This source reads every followee's latest
:data:`ITEMS_PER_USER` items of positive weight and scores a candidate ``c`` by

    ``Σ_f trust(u, f) · 2^(−age_fc / half_life)``

over the followees ``f`` who touched it, where ``age_fc`` is how long ago ``f`` last touched
it and ``half_life`` is the stream's own (the learned popularity half-life,
:mod:`models.halflife`). Trust is computed when scoring, from the two users' latest items:

    ``trust(u, f) = 1 + |{i ∈ latest(u) ∩ latest(f) : ts_u(i) > ts_f(i)}|``

the items both hold now that ``u`` touched after ``f`` last did, so the followees whose
items this user actually takes count more. It is a function of each user's own events only,
nothing learnt per pair: whoever learns a user's events, in whatever order next to the other
users', the scores come out the same (the worker learns users on several learners, and again
after Redis lost writes), and nothing about a pair is left to erase. How much the whole source
is worth is the blend's to learn (:mod:`models.blendlearn`), as for every other source.

>>> from models.events import Event, EventType
>>> model = FolloweeItems()
>>> events = [Event("f1", EventType.FOLLOW, "ann", 0.0, target_user_id="bob"),
...           Event("f2", EventType.FOLLOW, "ann", 0.0, target_user_id="cy"),
...           Event("e1", EventType.VIEW, "bob", 10.0, item_id="lamp"),
...           Event("e2", EventType.VIEW, "cy", 20.0, item_id="sofa"),
...           Event("e3", EventType.VIEW, "ann", 30.0, item_id="lamp"),   # bob was right
...           Event("e4", EventType.VIEW, "bob", 40.0, item_id="rug"),
...           Event("e5", EventType.VIEW, "cy", 40.0, item_id="vase")]
>>> for event in events:
...     model.learn(event)
>>> model.trust("ann", "bob"), model.trust("ann", "cy")
(2.0, 1.0)
>>> [item for item, _ in model.top_k("ann", 3, {"lamp"}, now=40.0, half_life_s=1e9)]
['rug', 'vase', 'sofa']
>>> apart = FolloweeItems()  # ann's events learnt before bob's: the same trust
>>> for event in sorted(events, key=lambda e: e.user_id):
...     apart.learn(event)
>>> apart.trust("ann", "bob")
2.0
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from models.events import DEFAULT_WEIGHTS, ITEM_TYPES, Event, EventType

#: Each user's latest items that their followers see (one entry per item, newest last).
ITEMS_PER_USER = 20
#: Followees read per request: the most recently followed, so a request stays bounded.
FOLLOWEES_READ = 200


class FolloweeItems:
    """The follow graph and each user's latest items; trust is read off the latest items."""

    def __init__(
        self,
        weights: Mapping[EventType, float] | None = None,
        *,
        items_per_user: int = ITEMS_PER_USER,
        followees_read: int = FOLLOWEES_READ,
        followees_kept: int | None = None,
    ) -> None:
        """``followees_kept``: the follow edges kept per user (the earliest followed go
        first); None keeps all (eval). The worker keeps :data:`FOLLOWEES_READ`, so its state
        is bounded and every edge it keeps is read."""
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        self.items_per_user = items_per_user
        self.followees_read = followees_read
        self.followees_kept = followees_kept
        self.following: dict[str, dict[str, float]] = {}  # user -> followee -> since
        self.latest: dict[str, dict[str, float]] = {}  # user -> item -> last ts, oldest first

    def trust(self, user_id: str, followee: str) -> float:
        """How much the followee's items count for the user: one, plus each item both hold
        among their latest that the user touched after the followee last did."""
        return _trust(self.latest.get(user_id, {}), self.latest.get(followee, {}))

    def restore_user(
        self,
        user_id: str,
        *,
        following: Mapping[str, float] | None = None,
        latest: Mapping[str, float] | None = None,
    ) -> None:
        """Load a user's stored state (``latest`` oldest first); what is None is left as is."""
        if following:
            self.following[user_id] = dict(following)
        if latest:
            self.latest[user_id] = dict(latest)

    def learn(self, event: Event) -> None:
        """Apply one event to its user's state: it reads and writes nobody else's."""
        user = event.user_id
        if event.type is EventType.FOLLOW and event.target_user_id is not None:
            if event.target_user_id != user:
                following = self.following.setdefault(user, {})
                following[event.target_user_id] = event.ts
                kept = self.followees_kept
                if kept is not None and len(following) > kept:
                    del following[min(following, key=lambda f: (following[f], f))]
            return
        if event.type is EventType.UNFOLLOW and event.target_user_id is not None:
            self.following.get(user, {}).pop(event.target_user_id, None)
            return
        item = event.item_id
        if item is None or event.type not in ITEM_TYPES:
            return
        if self.weights.get(event.type, DEFAULT_WEIGHTS[event.type]) <= 0.0:
            return
        mine = self.latest.setdefault(user, {})
        mine.pop(item, None)
        mine[item] = event.ts
        if len(mine) > self.items_per_user:
            del mine[next(iter(mine))]

    def top_k(
        self, user_id: str, k: int, exclude: AbstractSet[str], *, now: float, half_life_s: float
    ) -> list[tuple[str, float]]:
        """The ``k`` best items for the user, best first (ties by id), none excluded."""
        following = self.following.get(user_id)
        if not following or k <= 0:
            return []
        # Most recently followed first, always: the sums then do not depend on the order the
        # edges were stored in (the worker's come back from Redis by score).
        read = sorted(following, key=lambda f: (-following[f], f))[: self.followees_read]
        mine = self.latest.get(user_id, {})
        rate = 1.0 / half_life_s
        scores: dict[str, float] = {}
        for followee in read:
            items = self.latest.get(followee)
            if not items:
                continue
            trust = _trust(mine, items)
            for item, ts in items.items():
                if item in exclude:
                    continue
                value = trust * 2.0 ** (-max(0.0, now - ts) * rate)
                scores[item] = scores.get(item, 0.0) + value
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(item, score) for item, score in ranked[:k] if score > 0.0]

    def forget_user(self, user_id: str) -> None:
        """Erase the user: their edges and items, and every edge naming them."""
        self.following.pop(user_id, None)
        self.latest.pop(user_id, None)
        for followees in self.following.values():
            followees.pop(user_id, None)


def _trust(mine: Mapping[str, float], theirs: Mapping[str, float]) -> float:
    """``1 +`` the items of ``theirs`` that ``mine`` holds with a later time."""
    return 1.0 + sum(1 for item, ts in theirs.items() if mine.get(item, ts) > ts)
