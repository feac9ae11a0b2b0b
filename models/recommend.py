"""Turn a user's state into a ranked, explained top-N list.

Two sources score candidates, and their scores add up:

* item-based collaborative filtering: ``r_ui = Σ_j a_uj · s_ij`` over the user's recent items
  j, each contribution explained by the item j behind it;
* social proof: items shared with the user, or bought or liked by people they follow, each
  worth ``w_action · 2^(−age / half-life)`` and explained by who did what.

Each item names its main source and carries the contribution of every source. Items the user
bought, hid or
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
(Reason(item_id='phone', contribution=1.0, user_id=None, action=None),)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from models.popularity import decayed_score
from models.state import PopularView, UserView


class Source(StrEnum):
    ITEM_CF = "item_cf"
    SOCIAL = "social"
    MF = "mf"  # online matrix factorisation (models.mf)
    CONTENT = "content"  # catalog content: profile match and content neighbours (models.content)
    USER_CF = "user_cf"  # people who act like you (models.usercf)
    FBT = "fbt"  # frequently bought together with the user's basket (models.fbt)
    TRENDING = "trending"
    POPULAR = "popular"
    EXPLORE = "explore"  # the exploration slot: a new or long-tail item


#: What one social proof is worth before decay: a share to you persuades more than a
#: followee's purchase, which persuades more than their like.
DEFAULT_SOCIAL_WEIGHTS = {"share": 1.0, "purchase": 0.8, "like": 0.5}


@dataclass(frozen=True, slots=True)
class RecommendParams:
    top_n: int = 10
    exclude_items: frozenset[str] = frozenset()
    exclude_seen: bool = True
    reasons_per_item: int = 3
    half_life_s: float = 6 * 3600.0
    social_weights: tuple[tuple[str, float], ...] = tuple(DEFAULT_SOCIAL_WEIGHTS.items())
    social_half_life_s: float = 3 * 86400.0
    category_cap: int = 0  # at most this many items per category in a list (0: no cap)


@dataclass(frozen=True, slots=True)
class Reason:
    """What added to a score: one of the user's items (item-CF), or a person and what they did
    (social: ``user_id`` shared it with the user, or bought/liked it)."""

    item_id: str | None
    contribution: float
    user_id: str | None = None
    action: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One item a source proposes for a user: the source's own score (higher is better, on the
    source's scale; the assembly normalises) and why."""

    item_id: str
    score: float
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class RecommendedItem:
    item_id: str
    score: float
    source: Source
    reasons: tuple[Reason, ...]
    sources: tuple[tuple[Source, float], ...] = ()  # each source's share of the score


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


def social_scores(
    view: UserView, params: RecommendParams, now: float
) -> dict[str, list[tuple[float, Reason]]]:
    """Candidate -> [(decayed weight, who did what)] from the user's social proof."""
    weights = dict(params.social_weights)
    out: dict[str, list[tuple[float, Reason]]] = {}
    for proof in view.social:
        weight = weights.get(proof.action, 0.0)
        if weight <= 0.0:
            continue
        age = max(0.0, now - proof.ts)
        value = weight * math.pow(2.0, -age / params.social_half_life_s)
        reason = Reason(None, value, user_id=proof.user_id, action=proof.action)
        out.setdefault(proof.item_id, []).append((value, reason))
    return out


def _reason_order(reason: Reason) -> tuple[float, str, str]:
    return (-reason.contribution, reason.item_id or "", reason.user_id or "")


def diversify(
    ranked: Iterable[RecommendedItem],
    excluded: frozenset[str],
    top_n: int,
    category_cap: int,
    categories: Mapping[str, str] | None,
) -> list[RecommendedItem]:
    """The first ``top_n`` of ``ranked``, each item once, none excluded, and at most
    ``category_cap`` per category (items of unknown category are not capped). If the cap
    leaves the list short, the best passed-over items fill it: a cap diversifies, it never
    shortens a list.

    >>> items = [RecommendedItem(i, 1.0, Source.POPULAR, ()) for i in ["a1", "a2", "b1"]]
    >>> [r.item_id for r in diversify(items, frozenset(), 2, 1, {"a1": "A", "a2": "A", "b1": "B"})]
    ['a1', 'b1']
    """
    cats = categories or {}
    chosen: list[RecommendedItem] = []
    passed_over: list[RecommendedItem] = []
    per_category: dict[str, int] = {}
    taken: set[str] = set()
    for item in ranked:
        if len(chosen) >= top_n:
            break
        if item.item_id in excluded or item.item_id in taken:
            continue
        taken.add(item.item_id)
        category = cats.get(item.item_id, "")
        if category_cap and category and per_category.get(category, 0) >= category_cap:
            passed_over.append(item)
            continue
        per_category[category] = per_category.get(category, 0) + 1
        chosen.append(item)
    return chosen + passed_over[: top_n - len(chosen)]


def excluded_items(view: UserView, params: RecommendParams) -> frozenset[str]:
    """Everything that must never be shown to this user right now."""
    excluded = view.bought | view.hidden | params.exclude_items
    return excluded | view.seen if params.exclude_seen else excluded


def recommend(
    view: UserView,
    popular: PopularView,
    params: RecommendParams,
    *,
    now: float,
    trending: Sequence[tuple[str, float]] = (),
    categories: Mapping[str, str] | None = None,
) -> Recommendations:
    """The user's top-N: item-CF candidates first, popular items to fill, never an excluded one.

    ``now`` only converts stored popularity into a decayed count for display.
    """
    excluded = excluded_items(view, params)
    contributions = item_cf_scores(view)
    social = social_scores(view, params, now)
    scored = []
    for candidate in contributions.keys() | social.keys():
        if candidate in excluded:
            continue
        cf = sum(c for c, _ in contributions.get(candidate, ()))
        so = sum(c for c, _ in social.get(candidate, ()))
        scored.append((cf + so, candidate, cf, so))
    # With a category cap some of the best may be passed over: look a little deeper.
    depth = params.top_n * (4 if params.category_cap else 1)
    best = heapq.nsmallest(depth, scored, key=lambda sc: (-sc[0], sc[1]))

    def personal(score: float, candidate: str, cf: float, so: float) -> RecommendedItem:
        reasons = [Reason(item, c) for c, item in contributions.get(candidate, ())]
        reasons += [reason for _, reason in social.get(candidate, ())]
        reasons.sort(key=_reason_order)
        sources = tuple((s, v) for s, v in ((Source.ITEM_CF, cf), (Source.SOCIAL, so)) if v > 0)
        main = Source.ITEM_CF if cf >= so else Source.SOCIAL
        return RecommendedItem(
            candidate, score, main, tuple(reasons[: params.reasons_per_item]), sources
        )

    def ranked() -> Iterator[RecommendedItem]:
        """Personal candidates by score, then the fallbacks in order: what is trending right
        now (the last minute), then what has been popular over hours (a cold-start user gets
        them immediately)."""
        for score, candidate, cf, so in best:
            yield personal(score, candidate, cf, so)
        for item_id, count in trending:
            yield RecommendedItem(item_id, count, Source.TRENDING, (), ((Source.TRENDING, count),))
        for item_id, stored in popular.items:
            score = decayed_score(
                stored, landmark=popular.landmark, at=now, half_life_s=params.half_life_s
            )
            yield RecommendedItem(item_id, score, Source.POPULAR, (), ((Source.POPULAR, score),))

    chosen = diversify(ranked(), excluded, params.top_n, params.category_cap, categories)
    cold_start = not view.recent  # no usable history: everything is a fallback
    return Recommendations(view.user_id, tuple(chosen), cold_start)
