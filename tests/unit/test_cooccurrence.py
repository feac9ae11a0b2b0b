"""Properties of item-CF's counts and neighbour lists (models/cooccurrence.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.cooccurrence import Cooccurrence
from models.events import Event
from models.shrinkage import ShrinkageEstimator
from models.similarity import cooccurrence_counts
from models.state import MemoryState, Outcome, StateParams
from tests.unit.strategies import event_streams

#: Caps large enough that nothing is evicted, so the incremental sums must be exact.
UNBOUNDED = StateParams(cooccurrence_window=10_000, neighbours=10_000, cooccurrence_cap=10_000)


def _applied(events: list[Event]) -> list[Event]:
    """The events the publish path applies (the learner learns exactly those)."""
    state = MemoryState(StateParams())
    return [e for e in events if state.apply(e) is Outcome.APPLIED]


def _learn(events: list[Event], params: StateParams = UNBOUNDED, batch: int = 1) -> Cooccurrence:
    cf = Cooccurrence(params)
    applied = _applied(events)
    for start in range(0, len(applied), batch):
        cf.learn(applied[start : start + batch])
    return cf


@given(event_streams())
def test_similarity_is_symmetric_and_within_unit_interval(events: list[Event]) -> None:
    cf = _learn(events)
    items = {e.item_id for e in events if e.item_id}
    for a in items:
        for b in items:
            s = cf.similarity(a, b)
            assert 0.0 <= s <= 1.0
            assert s == cf.similarity(b, a)


@given(event_streams(), st.sampled_from([2, 5, 10_000]), st.sampled_from([1, 7, 100]))
def test_incremental_counts_equal_batch_recomputation(
    events: list[Event], window: int, batch: int
) -> None:
    """The dot products and norms are the sums over users of a_ui·a_uj and a_ui² of the
    affinities in their current windows, whatever the window size and however the stream is
    cut into batches."""
    cf = _learn(events, StateParams(cooccurrence_window=window, cooccurrence_cap=10_000), batch)
    dots, norms = cooccurrence_counts(
        {user: {i: a for i, (a, _) in w.items()} for user, w in cf.windows.items()}
    )
    for (a, b), expected in dots.items():
        if expected > 1e-9:
            assert math.isclose(cf.dot[a].scores[b], expected, rel_tol=1e-9, abs_tol=1e-9)
            assert math.isclose(cf.dot[b].scores[a], expected, rel_tol=1e-9, abs_tol=1e-9)
    assert sum(len(row.scores) for row in cf.dot.values()) == 2 * sum(
        1 for v in dots.values() if v > 1e-9
    )
    for item, expected in norms.items():
        assert math.isclose(cf.norm2.get(item, 0.0), expected, rel_tol=1e-9, abs_tol=1e-9)


@given(event_streams(), st.integers(min_value=0, max_value=60))
def test_counts_of_a_stream_equal_the_sum_of_its_parts(events: list[Event], cut: int) -> None:
    """Counts of the whole stream = the users' parts added up: what lets learners of
    different partitions write increments to the same rows."""
    users = sorted({e.user_id for e in events})
    left_users = set(users[: cut % (len(users) + 1)])
    whole = _learn(events)
    left = _learn([e for e in events if e.user_id in left_users])
    right = _learn([e for e in events if e.user_id not in left_users])
    for a, row in whole.dot.items():
        for b, value in row.scores.items():
            parts = sum(p.dot[a].scores.get(b, 0.0) for p in (left, right) if a in p.dot)
            assert math.isclose(value, parts, rel_tol=1e-9, abs_tol=1e-9)
    for item, value in whole.norm2.items():
        parts = left.norm2.get(item, 0.0) + right.norm2.get(item, 0.0)
        assert math.isclose(value, parts, rel_tol=1e-9, abs_tol=1e-9)


@given(event_streams())
@settings(max_examples=50)
def test_bounded_structures_stay_bounded(events: list[Event]) -> None:
    params = StateParams(cooccurrence_window=3, neighbours=2, cooccurrence_cap=4)
    cf = _learn(events, params, batch=5)
    assert all(len(w) <= 3 for w in cf.windows.values())
    assert all(len(s) <= 2 for s in cf.sim.values())
    assert all(len(d) <= 4 for d in cf.dot.values())


@given(event_streams(), st.sampled_from([1, 10]))
def test_erasing_a_user_leaves_the_counts_of_a_stream_without_them(
    events: list[Event], batch: int
) -> None:
    victim = "u1"
    erased = _learn(events, batch=batch)
    erased.erase(victim)
    never = _learn([e for e in events if e.user_id != victim], batch=batch)
    assert victim not in erased.windows
    assert set(erased.norm2) == set(never.norm2)
    for item, value in never.norm2.items():
        assert math.isclose(erased.norm2[item], value, rel_tol=1e-9, abs_tol=1e-9)
    for a, row in never.dot.items():
        for b, value in row.scores.items():
            assert math.isclose(erased.dot[a].scores[b], value, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=60, deadline=None)
@given(event_streams(), st.floats(0.5, 20.0))
def test_learned_shrinkage_is_scale_times_the_mean_item_norm(
    events: list[Event], scale: float
) -> None:
    cf = _learn(events, StateParams(shrinkage_scale=scale, cooccurrence_window=4))
    norms = [v for v in cf.norm2.values() if v > 1e-9]
    expected = max(1.0, scale * sum(norms) / len(norms)) if norms else 1.0
    assert cf.shrinkage == pytest.approx(expected, rel=1e-6)


def test_fixed_shrinkage_is_unchanged_by_default() -> None:
    cf = Cooccurrence(StateParams())
    assert cf.estimator is None
    assert cf.shrinkage == StateParams().shrinkage
    assert isinstance(Cooccurrence(StateParams(shrinkage_scale=2.0)).estimator, ShrinkageEstimator)
