"""The pure pieces the Redis-backed FBT and user-CF sources stand on.

A source restores only the users of a batch into a throwaway model, applies the batch and
writes back the difference; these properties are what makes that exact.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import EventType
from models.fbt import (
    Basket,
    BasketCounts,
    BasketTracker,
    Rule,
    basket_candidates,
    basket_counts,
)
from models.usercf import UserCF

USERS = ["u0", "u1", "u2", "u3"]
ITEMS = [f"sku{k}" for k in range(6)]
TYPES = [EventType.CART, EventType.PURCHASE, EventType.VIEW, EventType.LIKE, EventType.HIDE]
Step = tuple[str, str, float, EventType]

steps = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.sampled_from(ITEMS),
        st.sampled_from([1.0, 60.0, 2000.0, 50_000.0]),
        st.sampled_from(TYPES),
    ),
    max_size=60,
)


def timed(raw: list[tuple[str, str, float, EventType]]) -> list[Step]:
    ts, out = 1_700_000_000.0, []
    for user, item, gap, kind in raw:
        ts += gap
        out.append((user, item, ts, kind))
    return out


def tracker() -> BasketTracker:
    return BasketTracker(1800.0, max_basket_items=3, baskets_per_user=2)


def assert_counts(a: BasketCounts, b: BasketCounts) -> None:
    assert (a.baskets, a.items, a.pairs) == (b.baskets, b.items, b.pairs)


@settings(max_examples=150, deadline=None)
@given(steps, steps)
def test_restored_users_give_the_exact_change_of_the_counts(
    first: list[tuple[str, str, float, EventType]], second: list[tuple[str, str, float, EventType]]
) -> None:
    events = timed(first + second)
    head, tail = events[: len(first)], events[len(first) :]
    full = tracker()
    for user, item, ts, kind in head:
        full.add(user, item, ts, kind)
    before = full.counts()
    local = tracker()
    for user in dict.fromkeys(u for u, *_ in tail):
        local.restore_user(user, full.users.get(user, []))
    local_before = local.counts()
    for user, item, ts, kind in tail:
        full.add(user, item, ts, kind)
        local.add(user, item, ts, kind)
    assert_counts(local.counts().minus(local_before), full.counts().minus(before))
    # And the counts are always the counts of the retained baskets.
    assert_counts(basket_counts(b for bs in full.users.values() for b in bs), full.counts())


def test_negated_counts_undo_them() -> None:
    counts = basket_counts([Basket(["a", "b", "c"]), Basket(["a"])])
    assert counts.items == {"a": 2, "b": 1, "c": 1}
    assert counts.pairs["a"] == {"b": 1, "c": 1}
    assert_counts(counts.negated().minus(counts.negated()), BasketCounts())
    assert_counts(BasketCounts().minus(counts), counts.negated())


def test_restore_rejects_a_user_already_present() -> None:
    bt = tracker()
    bt.add("u0", "a", 0.0, EventType.CART)
    try:
        bt.restore_user("u0", [])
    except ValueError:
        return
    raise AssertionError("restore_user accepted a user it already had")


def rule(b: str, confidence: float, lift: float, antecedent: str = "a") -> Rule:
    return Rule(antecedent, b, 0.1, confidence, lift, 3)


def test_basket_candidates_keep_only_associations() -> None:
    rules = {
        "a": [rule("everywhere", 0.9, 1.0), rule("linked", 0.5, 2.0), rule("b", 0.5, 3.0)],
        "b": [rule("linked", 0.2, 2.0, "b"), rule("rare", 0.1, 5.0, "b")],
    }
    found = basket_candidates(["a", "b"], rules, k=5)
    # "everywhere" (lift 1) adds nothing; "b" is in the basket; linked = 0.25 + 0.1.
    assert [c.item_id for c in found] == ["linked", "rare"]
    assert found[0].score == 0.25 + 0.1
    assert found[0].because == (("a", 0.25), ("b", 0.1))
    assert basket_candidates(["a", "b"], rules, k=5, exclude={"linked"})[0].item_id == "rare"
    assert basket_candidates(["a", "b"], rules, k=1)[0].item_id == "linked"


@settings(max_examples=100, deadline=None)
@given(steps, steps)
def test_usercf_restored_rows_continue_like_the_original(
    first: list[tuple[str, str, float, EventType]], second: list[tuple[str, str, float, EventType]]
) -> None:
    events = timed(first + second)
    head, tail = events[: len(first)], events[len(first) :]

    def model() -> UserCF:
        return UserCF(items_per_user=3, users_per_item=1000)

    full = model()
    for user, item, ts, kind in head:
        full.add(user, item, kind, ts)
    local = model()
    for user, row in full.items.items():
        local.restore_user(user, {i: (a, full.index[i][user]) for i, a in row.items()})
    for user, item, ts, kind in tail:
        full.add(user, item, kind, ts)
        local.add(user, item, kind, ts)
    assert local.snapshot() == full.snapshot()
