"""What shapes a ranking into a list beyond its order: the category cap (:func:`diversify`) and
the exploration slots at its end (:func:`exploration`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace

from models.recommend.candidates import RecommendedItem, Source

#: An entry of a ranking, resolved into a :class:`RecommendedItem` only if it is chosen: the
#: item, and None for a personal candidate or the fallback source with its score.
Ranked = tuple[str, Source | None, float]


def diversify(
    ranked: Iterable[Ranked],
    excluded: AbstractSet[str],
    top_n: int,
    category_cap: int,
    categories: Mapping[str, str] | None,
) -> list[Ranked]:
    """The first ``top_n`` of ``ranked``, each item once, none excluded, and at most
    ``category_cap`` per category (items of unknown category are not capped). If the cap
    leaves the list short, the best passed-over items fill it: a cap diversifies, it never
    shortens a list.

    >>> ranked = [(i, Source.POPULAR, 1.0) for i in ["a1", "a2", "b1"]]
    >>> [item for item, _, _ in diversify(ranked, frozenset(), 2, 1,
    ...                                   {"a1": "A", "a2": "A", "b1": "B"})]
    ['a1', 'b1']
    """
    cats = categories or {}
    chosen: list[Ranked] = []
    passed_over: list[Ranked] = []
    per_category: dict[str, int] = {}
    taken: set[str] = set()
    for entry in ranked:
        if len(chosen) >= top_n:
            break
        item_id = entry[0]
        if item_id in excluded or item_id in taken:
            continue
        taken.add(item_id)
        category = cats.get(item_id, "")
        if category_cap and category and per_category.get(category, 0) >= category_cap:
            passed_over.append(entry)
            continue
        per_category[category] = per_category.get(category, 0) + 1
        chosen.append(entry)
    return chosen + passed_over[: top_n - len(chosen)]


def exploration(
    pool: Sequence[str],
    excluded: AbstractSet[str],
    slots: int,
    explain: Callable[[str], RecommendedItem | None] = lambda _: None,
) -> list[RecommendedItem]:
    """The first ``slots`` items of the exploration pool the user may see, as
    :data:`Source.EXPLORE`, keeping the reasons ``explain`` gives for an item (a personal
    candidate's), if any.

    >>> [r.item_id for r in exploration(["new1", "seen", "new2"], {"seen"}, 1)]
    ['new1']
    """
    chosen: list[RecommendedItem] = []
    taken = set(excluded)
    for item_id in pool:
        if len(chosen) >= slots:
            break
        if item_id in taken:
            continue
        taken.add(item_id)
        known = explain(item_id)
        if known is None:
            chosen.append(
                RecommendedItem(item_id, 0.0, Source.EXPLORE, (), ((Source.EXPLORE, 0.0),))
            )
        else:
            chosen.append(replace(known, source=Source.EXPLORE))
    return chosen
