"""Association rules from basket counts, and the items that complete a basket: each rule
``A → B`` with A in the basket adds how much likelier A makes B.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Rule:
    antecedent: str
    consequent: str
    support: float  # n(A,B) / N
    confidence: float  # n(A,B) / n(A)
    lift: float  # confidence / (n(B) / N)
    count: int  # n(A,B): baskets with both


def _by_lift(rule: Rule) -> tuple[float, float, int, str]:
    return (-rule.lift, -rule.confidence, -rule.count, rule.consequent)


def _by_confidence(rule: Rule) -> tuple[float, float, int, str]:
    return (-rule.confidence, -rule.lift, -rule.count, rule.consequent)


def rules_from_counts(
    item_id: str,
    n_a: int,
    pairs: Mapping[str, int],
    item_counts: Mapping[str, int],
    total: int,
    k: int = 10,
    *,
    min_support: float = 0.0,
    min_confidence: float = 0.0,
    min_count: int = 1,
    by: Literal["lift", "confidence"] = "lift",
) -> list[Rule]:
    """The best rules ``item_id → B`` from counts (``pairs``: B -> n(A,B)), however they were
    stored: what :meth:`BasketTracker.rules_for` computes, also usable on counts read back
    from a database. A consequent without a positive count is skipped.

    >>> [r.consequent for r in rules_from_counts("a", 3, {"b": 2, "c": 1}, {"b": 2}, 5)]
    ['b']
    """
    if n_a <= 0 or total <= 0:
        return []
    rules = []
    for other, n_ab in pairs.items():
        n_b = item_counts.get(other, 0)
        if n_ab < min_count or n_b <= 0:
            continue
        support = n_ab / total
        confidence = n_ab / n_a
        if support < min_support or confidence < min_confidence:
            continue
        lift = n_ab * total / (n_a * n_b)
        rules.append(Rule(item_id, other, support, confidence, lift, n_ab))
    return heapq.nsmallest(k, rules, key=_by_lift if by == "lift" else _by_confidence)


@dataclass(frozen=True, slots=True)
class BasketCandidate:
    """An item to add to a basket, and how much each basket item (antecedent) added."""

    item_id: str
    score: float
    because: tuple[tuple[str, float], ...]  # (antecedent, contribution), biggest first


def added_value(rule: Rule) -> float:
    """``confidence − P(B)`` = ``confidence · (1 − 1/lift)``: how much more likely B becomes
    once A is in the basket. Confidence alone favours items that are in every basket anyway
    (their lift is ~1 and they add nothing here), lift alone crowns rare items seen together
    once or twice; weighting confidence by lift this way keeps only the association, and a
    rule with lift ≤ 1 (B no likelier next to A than anywhere) adds nothing.

    >>> round(added_value(Rule("phone", "case", 0.6, 0.75, 1.25, 3)), 6)
    0.15
    """
    if rule.lift <= 1.0:
        return 0.0
    return rule.confidence * (1.0 - 1.0 / rule.lift)


def basket_candidates(
    basket: Sequence[str],
    rules: Mapping[str, Sequence[Rule]],
    k: int,
    exclude: Collection[str] = frozenset(),
) -> list[BasketCandidate]:
    """Items to add to ``basket``: each rule ``A → B`` with A in the basket adds
    :func:`added_value`; B already in the basket or in ``exclude`` is skipped. Best first,
    ties by item id.

    >>> r = {"phone": [Rule("phone", "case", 0.6, 0.75, 1.25, 3),
    ...                Rule("phone", "cable", 0.2, 0.25, 0.6, 1)]}
    >>> [(c.item_id, round(c.score, 6), c.because[0][0]) for c in basket_candidates(["phone"], r, 5)
    ... ]
    [('case', 0.15, 'phone')]
    """
    in_basket = set(basket)
    parts: dict[str, list[tuple[float, str]]] = {}
    for antecedent in dict.fromkeys(basket):
        for rule in rules.get(antecedent, ()):
            b = rule.consequent
            if b in in_basket or b in exclude:
                continue
            value = added_value(rule)
            if value > 0.0:
                parts.setdefault(b, []).append((value, antecedent))
    scored = [(math.fsum(v for v, _ in p), item) for item, p in parts.items()]
    best = heapq.nsmallest(k, scored, key=lambda s: (-s[0], s[1]))
    return [
        BasketCandidate(
            item, score, tuple((a, v) for v, a in sorted(parts[item], key=lambda x: (-x[0], x[1])))
        )
        for score, item in best
    ]
