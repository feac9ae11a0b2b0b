"""Frequently bought together (models/fbt/): exact counts, planted pairs, exact erasure."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import EventType
from models.fbt import BasketTracker
from tests.unit.strategies import strings_in

T0 = 1_700_000_000.0
USERS = [f"user{k}" for k in range(5)]
ITEMS = [f"sku{k}" for k in range(8)]
TYPES = [EventType.CART, EventType.PURCHASE, EventType.VIEW, EventType.LIKE]


@dataclass(frozen=True)
class Step:
    user_id: str
    item_id: str
    ts: float
    event_type: EventType
    expire: bool  # run expire(ts) after this event


@st.composite
def streams(draw: st.DrawFn, max_size: int = 60) -> list[Step]:
    count = draw(st.integers(min_value=0, max_value=max_size))
    ts = T0
    steps = []
    for _ in range(count):
        ts += draw(st.sampled_from([1.0, 60.0, 600.0, 2000.0, 50_000.0]))
        steps.append(
            Step(
                draw(st.sampled_from(USERS)),
                draw(st.sampled_from(ITEMS)),
                ts - draw(st.sampled_from([0.0, 0.0, 0.0, 900.0])),  # some late events
                draw(st.sampled_from(TYPES)),
                draw(st.integers(0, 9)) == 0,
            )
        )
    return steps


def _small() -> BasketTracker:
    return BasketTracker(
        session_gap_s=1800, max_basket_items=4, baskets_per_user=3, basket_ttl_s=200_000
    )


def _replay(steps: list[Step], tracker: BasketTracker | None = None) -> BasketTracker:
    tracker = tracker or _small()
    for step in steps:
        tracker.add(step.user_id, step.item_id, step.ts, step.event_type)
        if step.expire:
            tracker.expire(step.ts)
    return tracker


@settings(max_examples=40, deadline=None)
@given(streams())
def test_counts_equal_a_recount_of_the_retained_baskets(steps: list[Step]) -> None:
    tracker = _replay(steps)
    items: dict[str, int] = {}
    pairs: dict[tuple[str, str], int] = {}
    baskets = [b for user in tracker.users.values() for b in user]
    for basket in baskets:
        assert 0 < len(basket.items) <= tracker.max_basket_items  # bounded pair work
        assert len(set(basket.items)) == len(basket.items)
        for item in basket.items:
            items[item] = items.get(item, 0) + 1
        for a, b in combinations(basket.items, 2):
            for pair in ((a, b), (b, a)):
                pairs[pair] = pairs.get(pair, 0) + 1
    assert tracker.baskets == len(baskets)
    assert tracker.item_counts == items
    assert {(a, b): n for a, row in tracker.pair_counts.items() for b, n in row.items()} == pairs
    for user_baskets in tracker.users.values():  # bounded history per user
        assert 0 < len(user_baskets) <= tracker.baskets_per_user


@settings(max_examples=40, deadline=None)
@given(streams(), st.sampled_from(USERS))
def test_forget_user_equals_never_having_seen_them(steps: list[Step], user: str) -> None:
    forgotten = _replay(steps)
    forgotten.forget_user(user)
    # Expiry runs at the same times in both (it is a clock tick, not the user's event).
    without = _small()
    for step in steps:
        if step.user_id != user:
            without.add(step.user_id, step.item_id, step.ts, step.event_type)
        if step.expire:
            without.expire(step.ts)
    assert forgotten.snapshot() == without.snapshot()
    assert user not in strings_in(forgotten.snapshot())


@settings(max_examples=40, deadline=None)
@given(streams())
def test_rules_are_finite_bounded_and_deterministic(steps: list[Step]) -> None:
    a, b = _replay(steps), _replay(steps)
    assert a.snapshot() == b.snapshot()
    for item in ITEMS:
        for by in ("lift", "confidence"):
            rules = a.rules_for(item, k=10, by=by)
            assert rules == b.rules_for(item, k=10, by=by)
            for rule in rules:
                assert rule.antecedent == item != rule.consequent
                assert 0.0 < rule.support <= 1.0
                assert 0.0 < rule.confidence <= 1.0
                assert 0.0 < rule.lift < math.inf
                assert rule.count >= 1
            keys = [r.lift if by == "lift" else r.confidence for r in rules]
            assert keys == sorted(keys, reverse=True)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_planted_co_purchase_pair_has_the_best_lift_and_confidence(seed: int) -> None:
    """Random baskets over a Zipf-ish catalogue, plus 'phone' bought with 'case' 80% of the
    time: case is phone's best rule (and phone is case's), by lift and by confidence, and no
    other rule seen at least 10 times has a higher lift. (Below that, two rare items meeting
    5 times by chance can out-lift anything: that is what ``min_count`` is for.)"""
    rng = random.Random(seed)
    catalogue = [f"sku{k}" for k in range(40)]
    popularity = [1.0 / (k + 1) for k in range(40)]
    tracker = BasketTracker(session_gap_s=1800)
    ts = T0
    for n in range(1500):
        user = f"user{n % 300}"
        ts += 3600  # each user's next basket is in a new session
        basket = set(rng.choices(catalogue, popularity, k=rng.randint(1, 4)))
        if rng.random() < 0.15:
            basket.add("phone")
            if rng.random() < 0.8:
                basket.add("case")
        elif rng.random() < 0.03:
            basket.add("case")
        for offset, item in enumerate(sorted(basket)):
            tracker.add(user, item, ts + offset, EventType.PURCHASE)
    for by in ("lift", "confidence"):
        assert tracker.rules_for("phone", k=1, min_count=5, by=by)[0].consequent == "case"
    assert tracker.rules_for("case", k=1, min_count=5)[0].consequent == "phone"
    all_rules = [r for item in catalogue for r in tracker.rules_for(item, k=40, min_count=10)]
    best = tracker.rules_for("phone", k=1, min_count=10)[0]
    assert best.lift > 1.5 * max(r.lift for r in all_rules)


def test_the_session_gap_splits_baskets() -> None:
    tracker = BasketTracker(session_gap_s=1800)
    tracker.add("ann", "phone", T0, EventType.CART)
    tracker.add("ann", "case", T0 + 1700, EventType.PURCHASE)  # same session
    tracker.add("ann", "dress", T0 + 1700 + 1801, EventType.PURCHASE)  # a new one
    assert [b.items for b in tracker.users["ann"]] == [["phone", "case"], ["dress"]]
    assert tracker.baskets == 2
    assert tracker.open_basket("ann", now=T0 + 3502) == ("dress",)
    assert tracker.open_basket("ann", now=T0 + 99_999) == ()


def test_repeats_other_types_and_full_baskets_change_no_counts() -> None:
    tracker = BasketTracker(session_gap_s=1800, max_basket_items=2)
    assert tracker.add("ann", "phone", T0, EventType.CART)
    assert not tracker.add("ann", "phone", T0 + 1, EventType.PURCHASE)  # already in the basket
    assert not tracker.add("ann", "tv", T0 + 2, EventType.VIEW)
    assert tracker.add("ann", "case", T0 + 3, EventType.CART)
    assert not tracker.add("ann", "cable", T0 + 4, EventType.CART)  # basket full
    assert tracker.item_counts == {"phone": 1, "case": 1}
    assert tracker.users["ann"][-1].last_ts == T0 + 4  # the session still goes on


def test_old_baskets_fall_out_of_the_history_and_the_counts() -> None:
    tracker = BasketTracker(session_gap_s=10, baskets_per_user=2, basket_ttl_s=1000)
    for n, item in enumerate(["a", "b", "c"]):
        tracker.add("ann", item, T0 + 100 * n, EventType.PURCHASE)
    assert tracker.item_counts == {"b": 1, "c": 1}
    assert tracker.expire(T0 + 1150) == 1  # b's basket ended at T0 + 100
    assert tracker.item_counts == {"c": 1}
    assert tracker.expire(T0 + 5000) == 1
    assert tracker.snapshot() == {"users": {}, "item_counts": {}, "pair_counts": {}, "baskets": 0}


def test_unknown_items_have_no_rules() -> None:
    assert BasketTracker().rules_for("nothing") == []
