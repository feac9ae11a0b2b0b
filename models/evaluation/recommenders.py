"""The protocol every evaluated model implements, and the two models that define it: the
worker's own item-CF (:class:`ItemCFRecommender`) and a time-decayed popularity baseline.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import NamedTuple, Protocol

from models.cooccurrence import Cooccurrence
from models.events import DEFAULT_WEIGHTS, ITEM_TYPES, Event, EventType
from models.popularity import (
    decayed_score,
    forward_weight,
    needs_rebase,
    rebase_factor,
)
from models.recommend import (
    RecommendParams,
    blend_pools,
    candidate_pools,
    excluded_items,
)
from models.recommend import recommend as rank_for_user
from models.state import (
    NEIGHBOURS_READ,
    POPULAR_READ,
    RECENT_READ,
    MemoryState,
    Outcome,
    PopularView,
    StateParams,
    UserView,
)


class Scored(NamedTuple):
    """One recommended item: its id, the model's score and the source that proposed it."""

    item_id: str
    score: float
    source: str


class Recommender(Protocol):
    """What the replay needs from a model (all of it pure and in-process).

    ``recommend`` returns at most ``k`` items, best first, none of them in ``exclude`` (the
    items the user already touched). ``candidate_scores`` returns one number per item whose
    *order* is the order in which the model would rank those items for the user now, and 0 for
    an item it could not rank at all; only comparisons within one call matter (see
    :func:`request_auc`), so a learned ranker can return probabilities and a heuristic any
    monotone score.
    """

    @property
    def name(self) -> str: ...

    def learn(self, event: Event) -> None: ...

    def recommend(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]: ...

    def candidate_scores(
        self, user_id: str, item_ids: Sequence[str], now: float
    ) -> list[float]: ...


class _TopCache:
    """The top ``size`` members of a score map, in Redis ZREVRANGE order, kept incrementally.

    Valid while scores only grow (popularity under forward decay does); :meth:`update` reports
    a shrinking score so the owner can rebuild from the full map instead.

    >>> top = _TopCache(2)
    >>> for member, score in [("a", 1.0), ("b", 3.0), ("c", 2.0), ("a", 5.0)]:
    ...     _ = top.update(member, score)
    >>> top.top()
    [('a', 5.0), ('b', 3.0)]
    """

    __slots__ = ("asc", "keys", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.asc: list[tuple[float, bytes, str]] = []  # lowest first: (score, bytes, member)
        self.keys: dict[str, tuple[float, bytes, str]] = {}

    def reset(self, pairs: Iterable[tuple[str, float]]) -> None:
        self.asc = sorted((score, member.encode(), member) for member, score in pairs)
        self.asc = self.asc[-self.size :] if self.size else []
        self.keys = {key[2]: key for key in self.asc}

    def update(self, member: str, score: float) -> bool:
        """Record ``member``'s new score; False if it went down (the cache may now be wrong)."""
        old = self.keys.get(member)
        if old is not None:
            if score < old[0]:
                return False
            del self.asc[bisect_left(self.asc, old)]
        key = (score, member.encode(), member)
        if old is None and len(self.asc) >= self.size:
            if not self.asc or key <= self.asc[0]:
                return True
            del self.keys[self.asc.pop(0)[2]]
        insort(self.asc, key)
        self.keys[member] = key
        return True

    def __len__(self) -> int:
        return len(self.asc)

    def top(self) -> list[tuple[str, float]]:
        """Highest first, ties by member bytes descending (as ``SortedSet.top``)."""
        return [(member, score) for score, _, member in reversed(self.asc)]

    def descending(self) -> Iterator[tuple[str, float]]:
        """:meth:`top` one at a time, for callers that usually stop early."""
        return ((member, score) for score, _, member in reversed(self.asc))


# ------------------------------------------------------------------------------------------------
# The two models we have
# ------------------------------------------------------------------------------------------------


class ItemCFRecommender:
    """The worker's recommender, in-process: :class:`MemoryState` and item-CF's
    :class:`Cooccurrence` (learnt one event at a time) + :func:`recommend`.

    Reads the user exactly as the worker does (``recent_items`` and ``neighbours`` per recent
    item, the ``popular_items`` most popular items for fill-in; the defaults are
    ``streams.store.ReadParams``). Two evaluation-only details:

    * the state's ``seen`` set is the user's history *window* (``history_size`` items), so
      ``exclude_seen`` alone would let an item touched long ago come back; the items in
      ``exclude`` are added to ``seen`` so that "excluding items the user already touched"
      holds whatever the window;
    * the popular list is kept incrementally from the state's popularity scores (identical to
      ``MemoryState.popular``, which sorts every item on each call: too slow to run per event).

    >>> model = ItemCFRecommender(StateParams())
    >>> for n, item in enumerate(["phone", "case", "phone"]):
    ...     model.learn(Event(f"e{n}", EventType.PURCHASE, f"u{n // 2}", 1e9 + n, item_id=item))
    >>> [(s.item_id, s.source) for s in model.recommend("u1", 2, {"phone"}, now=1e9 + 3)]
    [('case', 'item_cf')]
    """

    name = "itemcf"

    def __init__(
        self,
        state_params: StateParams,
        recommend_params: RecommendParams | None = None,
        *,
        recent_items: int = RECENT_READ,
        neighbours: int = NEIGHBOURS_READ,
        popular_items: int = POPULAR_READ,
        followee_items: int = 0,
    ) -> None:
        params = recommend_params or RecommendParams(half_life_s=state_params.half_life_s)
        if not params.exclude_seen:
            raise ValueError("evaluation excludes items the user touched: set exclude_seen")
        self.state = MemoryState(state_params)
        self.cooccurrence = Cooccurrence(state_params)
        self.params = params
        self.recent_items = recent_items
        self.neighbours = neighbours
        self.popular_items = popular_items
        self.followee_items = followee_items
        self._popular = _TopCache(popular_items)
        self._landmark: float | None = None
        self._params_for_k: dict[int, RecommendParams] = {}
        # The last user read, reused by candidate_scores for the same request.
        self._cached: tuple[str, UserView] | None = None

    def learn(self, event: Event) -> None:
        self._cached = None
        if self.state.apply(event) is not Outcome.APPLIED or event.item_id is None:
            return
        self.cooccurrence.learn((event,))
        state = self.state
        if state.params.weight(event.type) <= 0.0:
            return  # popularity only counts positive weights
        score = state.popularity.scores.get(event.item_id)
        if (
            state.landmark != self._landmark  # a rebase rescaled every score
            or score is None  # trimmed away at once: the cache may hold stale members
            or state.params.popularity_cap <= self.popular_items
            or not self._popular.update(event.item_id, score)
        ):
            self._landmark = state.landmark
            self._popular.reset(state.popular(self.popular_items).items)

    def popular_view(self) -> PopularView:
        """What ``MemoryState.popular(popular_items)`` would return, without sorting it all."""
        return PopularView(tuple(self._popular.top()), self.state.landmark or 0.0)

    def view_for(self, user_id: str, exclude: AbstractSet[str]) -> UserView:
        """The user as the worker reads them, with ``exclude`` counted as seen."""
        view = self.state.user_view(
            user_id,
            recent_items=self.recent_items,
            neighbours=self.neighbours,
            followee_items=self.followee_items,
            similar=self.cooccurrence.neighbours,
        )
        if not exclude <= view.seen:
            view = replace(view, seen=view.seen | exclude)
        return view

    def recommend(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]:
        params = self._params_for_k.get(k)
        if params is None:
            params = self._params_for_k[k] = replace(self.params, top_n=k)
        view = self.view_for(user_id, exclude)
        self._cached = (user_id, view)
        recs = rank_for_user(view, self.popular_view(), params, now=now)
        return [Scored(r.item_id, r.score, r.source.value) for r in recs.items]

    def candidate_scores(self, user_id: str, item_ids: Sequence[str], now: float) -> list[float]:
        """The order :func:`recommend` would give with no limit on ``k`` or on popular items.

        Personal candidates rank first (by the blend of item-CF and social proof), then every
        item in the state's popularity ranking (by decayed popularity), then everything else
        (0). The two tiers are squashed
        into (2, 3) and (1, 2) by ``x / (1 + x)`` so one number carries the order.
        """
        cached = self._cached
        view = cached[1] if cached is not None and cached[0] == user_id else None
        if view is None:
            view = self.view_for(user_id, frozenset())
        # The blend recommend() ranks by: every source's normalised score, weighted.
        pools = candidate_pools(view, self.params, now, {})
        cf = blend_pools(pools, dict(self.params.source_weights)).totals
        excluded = excluded_items(view, self.params)
        popularity = self.state.popularity.scores
        landmark = self.state.landmark or 0.0
        half_life = self.params.half_life_s
        scores = []
        for item in item_ids:
            if item in excluded:
                scores.append(0.0)
            elif item in cf:
                scores.append(2.0 + cf[item] / (1.0 + cf[item]))
            elif item in popularity:
                p = decayed_score(
                    popularity[item], landmark=landmark, at=now, half_life_s=half_life
                )
                scores.append(1.0 + p / (1.0 + p))
            else:
                scores.append(0.0)
        return scores


class PopularityRecommender:
    """Baseline: every user gets the items with the most time-decayed weighted events.

    The same event weights and half-life as the state's popularity, with no cap on items.

    >>> model = PopularityRecommender(half_life_s=3600.0)
    >>> for n, item in enumerate(["a", "b", "b"]):
    ...     model.learn(Event(f"e{n}", EventType.VIEW, "u1", 1e9 + n, item_id=item))
    >>> [s.item_id for s in model.recommend("u2", 5, set(), now=1e9 + 3)]
    ['b', 'a']
    >>> model.candidate_scores("u2", ["b", "a", "zzz"], now=1e9 + 3)[2]
    0.0
    """

    def __init__(
        self,
        weights: Mapping[EventType, float] | None = None,
        *,
        half_life_s: float = 6 * 3600.0,
        cache_size: int = 200,
        name: str = "popularity",
    ) -> None:
        self.name = name
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        self.half_life_s = half_life_s
        self.scores: dict[str, float] = {}
        self.landmark: float | None = None
        self._top = _TopCache(cache_size)

    def learn(self, event: Event) -> None:
        if event.item_id is None or event.type not in ITEM_TYPES:
            return
        weight = self.weights.get(event.type, DEFAULT_WEIGHTS[event.type])
        if weight <= 0.0:
            return
        if self.landmark is None:
            self.landmark = event.ts
        elif needs_rebase(ts=event.ts, landmark=self.landmark, half_life_s=self.half_life_s):
            factor = rebase_factor(
                old_landmark=self.landmark, new_landmark=event.ts, half_life_s=self.half_life_s
            )
            self.scores = {item: s * factor for item, s in self.scores.items()}
            self.landmark = event.ts
            self._top.reset(self.scores.items())
        amount = forward_weight(
            weight, ts=event.ts, landmark=self.landmark, half_life_s=self.half_life_s
        )
        score = self.scores[event.item_id] = self.scores.get(event.item_id, 0.0) + amount
        self._top.update(event.item_id, score)

    def _decayed(self, stored: float, now: float) -> float:
        return decayed_score(
            stored, landmark=self.landmark or 0.0, at=now, half_life_s=self.half_life_s
        )

    def recommend(
        self, user_id: str, k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]:
        chosen = self._pick(self._top.descending(), k, exclude, now)
        if len(chosen) < k and len(self._top) < len(self.scores):
            # The user touched most of the cached top: rank every item (rare, and correct).
            ranked = sorted(
                self.scores.items(), key=lambda kv: (kv[1], kv[0].encode()), reverse=True
            )
            chosen = self._pick(iter(ranked), k, exclude, now)
        return chosen

    def _pick(
        self, ranked: Iterator[tuple[str, float]], k: int, exclude: AbstractSet[str], now: float
    ) -> list[Scored]:
        chosen: list[Scored] = []
        for item, stored in ranked:
            if len(chosen) >= k:
                break
            if item not in exclude:
                chosen.append(Scored(item, self._decayed(stored, now), "popular"))
        return chosen

    def candidate_scores(self, user_id: str, item_ids: Sequence[str], now: float) -> list[float]:
        return [self._decayed(self.scores.get(item, 0.0), now) for item in item_ids]
