"""Turn a user's state into a ranked, explained top-N list.

Item-based collaborative filtering: ``r_ui = Σ_j a_uj · s_ij`` over the user's recent items j,
each candidate keeping the items that contributed (its reasons). Items the user bought, hid or
(optionally) already interacted with, and configured exclusions, are dropped. Remaining slots
are filled with time-decayed popular items (Gorse's "try sources in order until k" pattern);
a user with no usable history gets only popular items and is marked ``cold_start``.

>>> from models.state import UserView, PopularView
>>> view = UserView("u1", recent=(("phone", 2.0),), neighbours={"phone": (("case", 0.5),)},
...                 seen=frozenset({"phone"}), bought=frozenset(), hidden=frozenset())
>>> recs = recommend(view, PopularView((("tv", 9.0),), 0.0), RecommendParams(top_n=2), now=0.0)
>>> [(r.item_id, str(r.source), r.score) for r in recs.items]
[('case', 'item_cf', 1.0), ('tv', 'popular', 9.0)]
>>> recs.items[0].reasons
(Reason(item_id='phone', contribution=1.0),)
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from enum import StrEnum

from models.popularity import decayed_score
from models.state import PopularView, UserView


class Source(StrEnum):
    ITEM_CF = "item_cf"
    POPULAR = "popular"


@dataclass(frozen=True, slots=True)
class RecommendParams:
    top_n: int = 10
    exclude_items: frozenset[str] = frozenset()
    exclude_seen: bool = True
    reasons_per_item: int = 3
    half_life_s: float = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class Reason:
    """One of the user's items and how much it added to the score."""

    item_id: str
    contribution: float


@dataclass(frozen=True, slots=True)
class RecommendedItem:
    item_id: str
    score: float
    source: Source
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class Recommendations:
    user_id: str
    items: tuple[RecommendedItem, ...]
    cold_start: bool


def item_cf_scores(view: UserView) -> dict[str, list[tuple[float, str]]]:
    """Candidate -> [(a_uj · s_ij, j)] for each recent item j that points at it.

    Plain tuples, not :class:`Reason` objects: this runs for every neighbour of every recent
    item, and only the few chosen candidates need their reasons spelled out.
    """
    contributions: dict[str, list[tuple[float, str]]] = {}
    for source_item, affinity in view.recent:
        for candidate, similarity in view.neighbours.get(source_item, ()):
            entry = contributions.get(candidate)
            if entry is None:
                contributions[candidate] = [(affinity * similarity, source_item)]
            else:
                entry.append((affinity * similarity, source_item))
    return contributions


def excluded_items(view: UserView, params: RecommendParams) -> frozenset[str]:
    """Everything that must never be shown to this user right now."""
    excluded = view.bought | view.hidden | params.exclude_items
    return excluded | view.seen if params.exclude_seen else excluded


def recommend(
    view: UserView, popular: PopularView, params: RecommendParams, *, now: float
) -> Recommendations:
    """The user's top-N: item-CF candidates first, popular items to fill, never an excluded one.

    ``now`` only converts stored popularity into a decayed count for display.
    """
    excluded = excluded_items(view, params)
    contributions = item_cf_scores(view)
    scored = [
        (sum(c for c, _ in parts), candidate)
        for candidate, parts in contributions.items()
        if candidate not in excluded
    ]
    best = heapq.nsmallest(params.top_n, scored, key=lambda sc: (-sc[0], sc[1]))
    chosen = []
    for score, candidate in best:
        top = sorted(contributions[candidate], key=lambda c: (-c[0], c[1]))
        reasons = tuple(Reason(item, c) for c, item in top[: params.reasons_per_item])
        chosen.append(RecommendedItem(candidate, score, Source.ITEM_CF, reasons))
    cold_start = not view.recent  # no usable history: everything below is a fallback

    taken = {r.item_id for r in chosen}
    for item_id, stored in popular.items:
        if len(chosen) >= params.top_n:
            break
        if item_id in excluded or item_id in taken:
            continue
        score = decayed_score(
            stored, landmark=popular.landmark, at=now, half_life_s=params.half_life_s
        )
        chosen.append(RecommendedItem(item_id, score, Source.POPULAR, ()))
        taken.add(item_id)
    return Recommendations(view.user_id, tuple(chosen), cold_start)
