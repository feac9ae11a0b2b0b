"""Properties of the state machine (models/state/) and the similarity maths behind it."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import Event, EventType
from models.similarity import cosine
from models.state import MemoryState, Outcome, StateParams
from models.state.seen import trim_at
from tests.unit.strategies import event_streams

#: Caps large enough that nothing is evicted, so the incremental sums must be exact.
UNBOUNDED = StateParams(
    history_size=10_000, neighbours=10_000, cooccurrence_cap=10_000, popularity_cap=10_000
)


def _replay(events: list[Event], params: StateParams = UNBOUNDED) -> MemoryState:
    state = MemoryState(params)
    state.apply_batch(events)
    return state


@given(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
)
def test_cosine_is_clamped(dot: float, na: float, nb: float) -> None:
    assert 0.0 <= cosine(dot, na, nb) <= 1.0


@given(event_streams())
def test_replaying_a_stream_changes_nothing(events: list[Event]) -> None:
    state = _replay(events, StateParams())
    before = state.snapshot()
    assert all(o is Outcome.DUPLICATE for o in state.apply_batch(events))
    assert state.snapshot() == before


@given(event_streams())
def test_a_replay_from_beyond_a_small_dedupe_window_changes_nothing(events: list[Event]) -> None:
    # Windows of 2 are trimmed all the time: what was trimmed away is behind the floor.
    state = _replay(events, StateParams(dedupe_window=2))
    before = state.snapshot()
    assert all(o is Outcome.DUPLICATE for o in state.apply_batch(events))
    assert state.snapshot() == before


@given(event_streams())
@settings(max_examples=50)
def test_bounded_structures_stay_bounded(events: list[Event]) -> None:
    params = StateParams(
        history_size=3, neighbours=2, cooccurrence_cap=4, dedupe_window=5, popularity_cap=4
    )
    state = _replay(events, params)
    for user in state.users.values():
        assert len(user.history) <= 3
        assert set(user.affinity) == set(user.history.scores)
        # Trimmed back to 5 past trim_at(5): more only while the oldest kept time is shared.
        times = sorted(
            float(v.partition("\t")[0]) for k, v in user.seen_events.entries.items() if k
        )
        assert len(times) <= trim_at(5) or times.count(times[0]) > len(times) - 5
    assert len(state.popularity) <= 4


def test_negative_feedback_removes_affinity_and_hides_the_item() -> None:
    state = MemoryState(StateParams())
    state.apply(Event("e1", EventType.VIEW, "u", 1e9, item_id="a"))
    state.apply(Event("e2", EventType.HIDE, "u", 1e9 + 1, item_id="a"))
    user = state.users["u"]
    assert "a" not in user.affinity
    assert "a" in user.hidden
    state.apply(Event("e3", EventType.CART, "u", 1e9 + 2, item_id="a"))
    assert "a" not in user.hidden  # a later positive action lifts the hide


def test_follow_graph_is_kept_both_ways() -> None:
    state = MemoryState(StateParams())
    state.apply(Event("f1", EventType.FOLLOW, "ann", 1e9, target_user_id="bob"))
    assert state.users["ann"].following == {"bob"}
    assert state.users["bob"].followers == {"ann"}
    state.apply(Event("f2", EventType.UNFOLLOW, "ann", 1e9 + 1, target_user_id="bob"))
    assert not state.users["ann"].following
    assert not state.users["bob"].followers


def test_popularity_rebase_preserves_ranking() -> None:
    params = StateParams(half_life_s=1.0)
    state = MemoryState(params)
    state.apply(Event("a", EventType.PURCHASE, "u1", 1e9, item_id="old"))
    state.apply(Event("b", EventType.VIEW, "u2", 1e9 + 100, item_id="new"))  # forces a rebase
    assert state.landmark == 1e9 + 100
    ranked = [item for item, _ in state.popular(2).items]
    assert ranked == ["new", "old"]  # 100 half-lives later the old purchase has decayed away
    assert all(math.isfinite(v) for v in state.popularity.scores.values())


def test_items_touched_within_the_seen_window_stay_excluded_beyond_the_history() -> None:
    params = StateParams(history_size=2, seen_window_s=100.0, seen_cap=10)
    state = MemoryState(params)
    for n, item in enumerate(["a", "b", "c", "d"]):
        state.apply(Event(f"e{n}", EventType.VIEW, "u", 1e9 + n, item_id=item))
    view = state.user_view("u", recent_items=20, neighbours=20)
    assert {i for i, _ in view.recent} == {"c", "d"}  # the history window moved on
    assert view.seen == {"a", "b", "c", "d"}  # but all four stay excluded
    state.apply(Event("late", EventType.VIEW, "u", 1e9 + 200, item_id="e"))
    assert state.user_view("u", recent_items=20, neighbours=20).seen == {"e"}  # window passed
