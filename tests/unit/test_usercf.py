"""User-user collaborative filtering (models/usercf/): neighbours, candidates, erasure."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import EventType
from models.usercf import UserCF, pool_order
from tests.unit.strategies import strings_in

T0 = 1_700_000_000.0
USERS = [f"user{k}" for k in range(7)]
ITEMS = [f"sku{k}" for k in range(9)]
TYPES = [
    EventType.VIEW,
    EventType.LIKE,
    EventType.SHARE,
    EventType.CART,
    EventType.PURCHASE,
    EventType.HIDE,
    EventType.FOLLOW,  # weight 0: no effect
]


@dataclass(frozen=True)
class Step:
    user_id: str
    item_id: str
    event_type: EventType
    ts: float
    expire: bool


@st.composite
def streams(draw: st.DrawFn, max_size: int = 60) -> list[Step]:
    count = draw(st.integers(min_value=0, max_value=max_size))
    ts = T0
    steps = []
    for _ in range(count):
        ts += draw(st.sampled_from([1.0, 30.0, 3600.0, 40_000.0]))
        steps.append(
            Step(
                draw(st.sampled_from(USERS)),
                draw(st.sampled_from(ITEMS)),
                draw(st.sampled_from(TYPES)),
                ts - draw(st.sampled_from([0.0, 0.0, 50.0])),
                draw(st.integers(0, 9)) == 0,
            )
        )
    return steps


def _small(pool: int | None = None) -> UserCF:
    return UserCF(
        items_per_user=4, users_per_item=3, neighbours=3, entry_ttl_s=100_000, neighbour_pool=pool
    )


def _replay(steps: list[Step]) -> UserCF:
    cf = _small()
    for step in steps:
        cf.add(step.user_id, step.item_id, step.event_type, step.ts)
        if step.expire:
            cf.expire(step.ts)
    return cf


def _check_invariants(cf: UserCF) -> None:
    entries = {(u, i) for u, row in cf.items.items() for i in row}
    assert entries == {(u, i) for i, users in cf.index.items() for u in users}  # both sides
    assert set(cf.norm2) == set(cf.items)
    for user, row in cf.items.items():
        assert 0 < len(row) <= cf.items_per_user
        assert all(0.0 < a <= cf.affinity_cap for a in row.values())
        assert math.isclose(cf.norm2[user], sum(a * a for a in row.values()))
    for users in cf.index.values():
        assert 0 < len(users) <= cf.users_per_item


@settings(max_examples=40, deadline=None)
@given(streams())
def test_entries_stay_consistent_and_bounded(steps: list[Step]) -> None:
    cf = _small()
    for step in steps:
        cf.add(step.user_id, step.item_id, step.event_type, step.ts)
        if step.expire:
            cf.expire(step.ts)
        _check_invariants(cf)


@settings(max_examples=40, deadline=None)
@given(streams())
def test_similarity_is_symmetric_in_the_unit_interval_and_matches_neighbours(
    steps: list[Step],
) -> None:
    cf = _replay(steps)
    for a in USERS:
        for b in USERS:
            s = cf.similarity(a, b)
            assert 0.0 <= s <= 1.0
            assert s == cf.similarity(b, a)
        for n in cf.neighbours(a, k=len(USERS)):
            assert n.user_id != a
            assert n.similarity == cf.similarity(a, n.user_id)  # the same sum, exactly
            assert n.overlap == len(set(cf.items[a]) & set(cf.items[n.user_id]))


@settings(max_examples=40, deadline=None)
@given(streams(), st.sets(st.sampled_from(ITEMS), max_size=3))
def test_candidates_are_new_finite_ranked_and_deterministic(
    steps: list[Step], exclude: set[str]
) -> None:
    cf, again = _replay(steps), _replay(steps)
    assert cf.snapshot() == again.snapshot()
    for user in USERS:
        found = cf.candidates(user, k=5, exclude=exclude)
        assert found == again.candidates(user, k=5, exclude=exclude)
        scores = [c.score for c in found]
        assert scores == sorted(scores, reverse=True)
        neighbours = {n.user_id for n in cf.neighbours(user)}
        for c in found:
            assert c.item_id not in exclude
            assert c.item_id not in cf.items.get(user, {})
            assert math.isfinite(c.score)
            assert c.score > 0.0
            assert c.contributors
            assert set(c.contributors) <= neighbours


def _rebuilt(cf: UserCF) -> UserCF:
    """The same entries in a model that has answered nothing yet (no cached arrays)."""
    fresh = _small(cf.neighbour_pool)
    for user, row in cf.items.items():
        fresh.restore_user(user, {i: (a, cf.index[i][user]) for i, a in row.items()})
    return fresh


@settings(max_examples=40, deadline=None)
@given(streams(), st.sets(st.sampled_from(ITEMS), max_size=3), st.sampled_from([None, 2]))
def test_answers_never_come_from_stale_arrays(
    steps: list[Step], exclude: set[str], pool: int | None
) -> None:
    # Queries between the updates fill the per-row and per-item arrays; every update must
    # drop the ones it changes, so answers equal those of a model rebuilt from the entries.
    cf = _small(pool)
    for n, step in enumerate(steps):
        cf.add(step.user_id, step.item_id, step.event_type, step.ts)
        if step.expire:
            cf.expire(step.ts)
        if n % 3 == 0:
            fresh = _rebuilt(cf)
            for user in USERS:
                assert cf.neighbours(user) == fresh.neighbours(user)
                assert cf.top_k(user, 5, exclude) == fresh.top_k(user, 5, exclude)


@settings(max_examples=40, deadline=None)
@given(streams(), st.sets(st.sampled_from(ITEMS), max_size=3))
def test_scores_are_the_running_sum_over_neighbours(steps: list[Step], exclude: set[str]) -> None:
    cf = _replay(steps)
    for user in USERS:
        own = cf.items.get(user, {})
        expected: dict[str, float] = {}
        for n in cf.neighbours(user):
            for item, affinity in cf.items[n.user_id].items():
                if item not in own and item not in exclude:
                    expected[item] = expected.get(item, 0.0) + n.similarity * affinity
        best = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        found = cf.top_k(user, 5, exclude)
        assert found == best  # exactly, ties by id


def _whole_state(cf: UserCF) -> object:
    """The snapshot and everything derived from it: the id codes and the cached arrays."""
    codes = (cf._user_codes, cf._item_codes)
    return [
        cf.snapshot(),
        [c.names for c in codes],
        [dict.fromkeys(c.code) for c in codes],
        dict.fromkeys(cf._row_arrays),
        dict.fromkeys(cf._index_arrays),
    ]


@settings(max_examples=40, deadline=None)
@given(streams(), st.sampled_from(USERS))
def test_forget_user_leaves_no_trace(steps: list[Step], user: str) -> None:
    cf = _replay(steps)
    for other in USERS:  # fill the caches first: they must not keep the user either
        cf.top_k(other, k=10)
    cf.forget_user(user)
    assert user not in strings_in(_whole_state(cf))
    _check_invariants(cf)
    for other in USERS:
        assert user not in {n.user_id for n in cf.neighbours(other)}
        for c in cf.candidates(other, k=10):
            assert user not in c.contributors


def test_overlapping_histories_are_neighbours_and_share_their_items() -> None:
    cf = UserCF()
    histories = {
        "ann": ["phone", "case", "charger", "tripod"],
        "bob": ["phone", "case", "charger", "earbuds"],
        "cy": ["dress", "heels", "lipstick"],
        "dee": ["dress", "heels", "handbag"],
        "eve": ["phone", "dress"],
    }
    for user, items in histories.items():
        for n, item in enumerate(items):
            cf.add(user, item, EventType.PURCHASE, T0 + n)
    assert cf.neighbours("ann", k=1)[0].user_id == "bob"
    assert cf.neighbours("cy", k=1)[0].user_id == "dee"
    ann = cf.candidates("ann", k=3)
    assert ann[0].item_id == "earbuds"
    assert ann[0].contributors == ("bob",)
    assert "phone" not in {c.item_id for c in ann}  # never what she already has
    assert cf.candidates("cy", k=1)[0].item_id == "handbag"
    assert cf.candidates("ann", k=3, exclude={"earbuds"})[0].item_id != "earbuds"


def test_a_hide_removes_the_entry() -> None:
    cf = UserCF()
    cf.add("ann", "phone", EventType.VIEW, T0)
    cf.add("bob", "phone", EventType.VIEW, T0)
    assert cf.similarity("ann", "bob") == 1.0
    assert cf.add("ann", "phone", EventType.HIDE, T0 + 1)
    assert cf.snapshot() == {
        "items": {"bob": {"phone": 1.0}},
        "index": {"phone": {"bob": T0}},
        "norm2": {"bob": 1.0},
    }
    assert not cf.add("ann", "phone", EventType.HIDE, T0 + 2)  # nothing left to lower
    assert not cf.add("ann", "phone", EventType.FOLLOW, T0 + 3)  # weight 0


def test_the_least_recent_entries_are_evicted_from_both_sides() -> None:
    cf = UserCF(items_per_user=2, users_per_item=2)
    for n, item in enumerate(["a", "b", "c"]):
        cf.add("ann", item, EventType.VIEW, T0 + n)
    assert set(cf.items["ann"]) == {"b", "c"}
    assert "a" not in cf.index
    for n, user in enumerate(["bob", "cy"]):
        cf.add(user, "c", EventType.VIEW, T0 + 10 + n)
    assert set(cf.index["c"]) == {"bob", "cy"}
    assert set(cf.items["ann"]) == {"b"}


def test_expire_drops_stale_entries() -> None:
    cf = UserCF(entry_ttl_s=1000)
    cf.add("ann", "a", EventType.VIEW, T0)
    cf.add("ann", "b", EventType.VIEW, T0 + 900)
    assert cf.expire(T0 + 1500) == 1
    assert cf.items == {"ann": {"b": 1.0}}
    assert cf.expire(T0 + 5000) == 1
    assert cf.snapshot() == {"items": {}, "index": {}, "norm2": {}}


def test_unknown_users_get_nothing() -> None:
    cf = UserCF()
    assert cf.neighbours("nobody") == []
    assert cf.candidates("nobody", k=5) == []
    assert cf.similarity("nobody", "else") == 0.0


# ---- the neighbour pool (as the worker reads Redis) --------------------------------------------


def _pooled(steps: list[Step], pool: int | None) -> UserCF:
    cf = UserCF(neighbour_pool=pool, neighbours=3)
    for step in steps:
        cf.add(step.user_id, step.item_id, step.event_type, step.ts)
    return cf


@settings(max_examples=40, deadline=None)
@given(streams())
def test_a_pool_as_large_as_everyone_changes_nothing(steps: list[Step]) -> None:
    everyone, pooled = _pooled(steps, None), _pooled(steps, len(USERS))
    for user in USERS:
        assert pooled.neighbours(user) == everyone.neighbours(user)
        assert pooled.top_k(user, 5) == everyone.top_k(user, 5)


@settings(max_examples=40, deadline=None)
@given(streams(), st.integers(min_value=1, max_value=4))
def test_the_pool_is_whom_the_worker_would_read(steps: list[Step], size: int) -> None:
    cf = _pooled(steps, size)
    for user in cf.items:
        # The reference: overlaps and latest times from the index, ordered by pool_order.
        overlaps: dict[str, tuple[int, float]] = {}
        for item in cf.items[user]:
            for other, ts in cf.index[item].items():
                if other != user:
                    n, latest = overlaps.get(other, (0, -math.inf))
                    overlaps[other] = (n + 1, max(latest, ts))
        expected = pool_order(overlaps, size)
        assert sorted(other for other, _ in cf._pool(user, cf.items[user], size)) == sorted(
            expected
        )
        assert {n.user_id for n in cf.neighbours(user)} <= set(expected)


def test_the_pool_prefers_items_in_common_then_the_most_recent() -> None:
    cf = UserCF(neighbour_pool=2)
    for user, item, ts in [
        ("ann", "phone", 1.0),
        ("ann", "case", 2.0),
        ("bob", "phone", 3.0),
        ("bob", "case", 4.0),  # two items in common with ann
        ("cy", "phone", 9.0),  # one, most recently
        ("dee", "phone", 5.0),  # one, earlier: left out
    ]:
        cf.add(user, item, EventType.PURCHASE, ts)
    assert {n.user_id for n in cf.neighbours("ann")} == {"bob", "cy"}


@settings(max_examples=150, deadline=None)
@given(
    rows=st.dictionaries(
        st.sampled_from(USERS),
        st.dictionaries(st.sampled_from(ITEMS), st.floats(0.5, 15.0), min_size=1, max_size=6),
        min_size=1,
    ),
    data=st.data(),
)
def test_a_model_of_many_pools_ranks_each_user_among_their_own_pool(
    rows: dict[str, dict[str, float]], data: st.DataObject
) -> None:
    """``among``: one model holding every row read from storage gives each user the
    candidates a model holding only that user and their pool gives (streams/sources/usercf.py
    reads rows once per batch, not once per pool)."""
    user = data.draw(st.sampled_from(sorted(rows)))
    pool = data.draw(st.lists(st.sampled_from(USERS), unique=True, max_size=5))
    exclude = frozenset(data.draw(st.lists(st.sampled_from(ITEMS), max_size=3)))

    def restored(members: list[str]) -> UserCF:
        cf = UserCF(neighbours=2)
        for member in members:
            if member in rows:
                cf.restore_user(member, {i: (a, 0.0) for i, a in rows[member].items()})
        return cf

    alone = restored(list(dict.fromkeys([user, *pool])))
    together = restored(sorted(rows))
    expected = alone.top_k(user, 4, exclude)
    assert together.top_k(user, 4, exclude, among=pool) == expected
