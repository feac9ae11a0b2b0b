"""A chosen personal candidate as shown: its blended score split over its sources (the main
one first) and each source's share split over that source's reasons, the biggest kept.

>>> pools = {Source.ITEM_CF: {"case": (1.5, [(1.0, "phone"), (0.5, "tv")])}}
>>> item = personal_item("case", 0.9, {Source.ITEM_CF: 0.9}, pools, reasons_per_item=1)
>>> item.source, [(r.item_id, round(r.contribution, 3)) for r in item.reasons]
(<Source.ITEM_CF: 'item_cf'>, [('phone', 0.6)])
"""

from __future__ import annotations

from collections.abc import Mapping

from models.recommend.candidates import PERSONAL_SOURCES, Pool, Reason, RecommendedItem, Source


def personal_item(
    item_id: str,
    score: float,
    parts: Mapping[Source, float],
    pools: Mapping[Source, Pool],
    reasons_per_item: int,
    *,
    explain: bool = True,
) -> RecommendedItem:
    """The candidate with ``score`` and its sources' ``parts`` of it (weight × normalised
    score), the biggest part naming its source; with ``explain``, also its
    ``reasons_per_item`` biggest reasons from ``pools`` (without, none: for callers that read
    only the list)."""
    ordered = sorted(parts.items(), key=lambda sv: (-sv[1], PERSONAL_SOURCES.index(sv[0])))
    shares = tuple((s, v) for s, v in ordered if v > 0)
    if not explain:
        return RecommendedItem(item_id, score, ordered[0][0], (), shares)
    # Every reason as its sort key (biggest contribution first, then by item, then by person)
    # followed by its fields; the position keeps equal keys in order, as a stable sort would.
    # Reason objects are built only for the ``reasons_per_item`` kept.
    keyed: list[tuple[float, str, str, int, str | None, float, str | None, str | None]] = []
    for source, share in parts.items():
        _, source_reasons = pools[source][item_id]
        # A source's share of the score is split over its reasons by their own weights
        # (evenly if those are not positive, e.g. an MF logit below zero).
        own = [r.contribution if isinstance(r, Reason) else r[0] for r in source_reasons]
        total = sum(w for w in own if w > 0)
        for r, w in zip(source_reasons, own, strict=True):
            part = max(0.0, share * w / total if total > 0 else share / len(own))
            if isinstance(r, Reason):
                item, user = r.item_id, r.user_id
                keyed.append(
                    (-part, item or "", user or "", len(keyed), item, part, user, r.action)
                )
            else:
                keyed.append((-part, r[1], "", len(keyed), r[1], part, None, None))
    keyed.sort()
    reasons = tuple(
        Reason(item, part, user, action)
        for *_, item, part, user, action in keyed[:reasons_per_item]
    )
    return RecommendedItem(item_id, score, ordered[0][0], reasons, shares)
