"""Why an item is, or is not, in a user's recommendations.

The answer follows the assembly's own order (models/recommend/), so it names the first step
that decided: the item was shown (with what the published list said), or a filter removed it
(bought, hidden, configured exclusion, already seen), or no source proposed it, or it was a
candidate but ranked below the cut (its position and the score it would have needed). The
ranking is recomputed with the same functions the worker uses (:func:`blend_pools`,
:func:`blend`), from the user's state now.

>>> from models.state import UserView
>>> view = UserView("u1", recent=(("phone", 2.0),), neighbours={"phone": (("case", 0.5),)},
...                 seen=frozenset({"phone"}), bought=frozenset({"phone"}), hidden=frozenset())
>>> params = RecommendParams(top_n=1)
>>> pools = candidate_pools(view, params, 0.0, {})
>>> explain("phone", view, params, pools, []).exclusions
('bought', 'seen')
>>> explain("case", view, params, pools, []).status
'not_shown'
>>> explain("tv", view, params, pools, []).status
'not_a_candidate'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from models.recommend import (
    Pool,
    Reason,
    RecommendParams,
    Source,
    blend,
    blend_pools,
    candidate_pools,
    excluded_items,
)
from models.state import UserView

__all__ = ["STATUSES", "Why", "candidate_pools", "explain"]

#: Every answer's status.
STATUSES: Final = ("recommended", "excluded", "not_a_candidate", "below_cut", "not_shown")


@dataclass(frozen=True, slots=True)
class Why:
    item_id: str
    status: str  # one of STATUSES
    detail: str  # one sentence for people
    exclusions: tuple[str, ...] = ()  # bought, hidden, excluded, seen
    position: int | None = None  # 1-based: in the published list, or among ranked candidates
    score: float | None = None
    cut_score: float | None = None  # the score of the last candidate that made the cut
    sources: dict[str, float] = field(default_factory=dict)  # source -> contribution
    reasons: tuple[dict[str, Any], ...] = ()


def _reason(reason: Reason | tuple[float, str]) -> dict[str, Any]:
    if isinstance(reason, Reason):
        out: dict[str, Any] = {"contribution": round(reason.contribution, 6)}
        if reason.item_id is not None:
            out["item_id"] = reason.item_id
        if reason.action is not None:
            out["action"] = reason.action
        if reason.user_id is not None:
            out["user_id"] = reason.user_id
        return out
    contribution, item_id = reason
    return {"item_id": item_id, "contribution": round(contribution, 6)}


def exclusions(item_id: str, view: UserView, params: RecommendParams) -> tuple[str, ...]:
    """Every filter that removes the item for this user (the same ones as
    :func:`models.recommend.excluded_items`)."""
    found = []
    if item_id in view.bought:
        found.append("bought")
    if item_id in view.hidden:
        found.append("hidden")
    if item_id in params.exclude_items:
        found.append("excluded")
    if params.exclude_seen and item_id in view.seen:
        found.append("seen")
    return tuple(found)


def explain(
    item_id: str,
    view: UserView,
    params: RecommendParams,
    pools: Mapping[Source, Pool],
    published: Sequence[Mapping[str, Any]],
) -> Why:
    """Why ``item_id`` is or is not among ``published`` (the user's latest list, as sent)."""
    shown = _in_published(item_id, published)
    if shown is not None:
        return shown
    excluded = exclusions(item_id, view, params)
    if excluded:
        return Why(
            item_id,
            "excluded",
            "never recommended to this user: " + ", ".join(excluded),
            exclusions=excluded,
        )
    weights = dict(params.source_weights)
    blended = blend_pools(pools, weights, len(view.recent))
    banned = excluded_items(view, params)
    totals = {item: t for item, t in blended.totals.items() if item not in banned}
    if item_id not in totals:
        return Why(
            item_id,
            "not_a_candidate",
            "no source proposes it for this user "
            "(fill-ins from trending and popular only take slots personal candidates leave)",
        )
    ranked = sorted(totals, key=lambda item: (-totals[item], item))
    position = ranked.index(item_id) + 1
    parts = blend(blended.features(item_id), weights)
    reasons = tuple(
        _reason(r) for source in parts for r in pools[source][item_id][1][: params.reasons_per_item]
    )
    cut = min(params.top_n, len(ranked))
    status, detail = _unshown(position, len(ranked), params.top_n)
    return Why(
        item_id,
        status,
        detail,
        position=position,
        score=round(totals[item_id], 6),
        cut_score=round(totals[ranked[cut - 1]], 6),
        sources={s.value: round(v, 6) for s, v in parts.items()},
        reasons=reasons,
    )


def _in_published(item_id: str, published: Sequence[Mapping[str, Any]]) -> Why | None:
    """The item's place in the published list, with what the list said of it; None if absent."""
    for position, entry in enumerate(published, start=1):
        if entry.get("item_id") == item_id:
            return Why(
                item_id,
                "recommended",
                f"in the user's latest list at position {position}, "
                f"mainly from {entry.get('source', 'unknown')}",
                position=position,
                score=float(entry.get("score", 0.0)),
                sources={str(k): float(v) for k, v in dict(entry.get("sources") or {}).items()},
                reasons=tuple(dict(r) for r in entry.get("reasons") or ()),
            )
    return None


def _unshown(position: int, candidates: int, top_n: int) -> tuple[str, str]:
    """The status and sentence of a candidate at ``position`` that is not in the list."""
    if position > top_n:
        return "below_cut", (
            f"a candidate ranked {position} of {candidates}; only the top {top_n} are shown"
        )
    return "not_shown", (
        f"ranked {position} among candidates but not in the published list: the category "
        "cap, the exploration slot, or state that changed since the list was published"
    )
