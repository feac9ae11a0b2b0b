"""Ranking properties: never an excluded item, explained scores, popular fallback."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from models.events import Event, EventType
from models.recommend import RecommendParams, Source, item_cf_scores, recommend
from models.state import MemoryState, StateParams
from tests.unit.strategies import event_streams

READ = {"recent_items": 20, "neighbours": 20}


def _state(events: list[Event]) -> MemoryState:
    state = MemoryState(StateParams())
    state.apply_batch(events)
    return state


@given(event_streams(), st.booleans())
def test_bought_hidden_and_excluded_items_are_never_recommended(
    events: list[Event], exclude_seen: bool
) -> None:
    state = _state(events)
    params = RecommendParams(top_n=5, exclude_items=frozenset({"i0"}), exclude_seen=exclude_seen)
    for user_id in state.users:
        view = state.user_view(user_id, **READ)
        recs = recommend(view, state.popular(50), params, now=1_700_000_000.0)
        shown = {r.item_id for r in recs.items}
        assert not shown & view.bought
        assert not shown & view.hidden
        assert "i0" not in shown
        if exclude_seen:
            assert not shown & view.seen
        assert len(shown) == len(recs.items) <= 5  # no duplicates, at most top_n


@given(event_streams())
def test_scores_are_finite_ranked_and_explained(events: list[Event]) -> None:
    state = _state(events)
    for user_id in state.users:
        view = state.user_view(user_id, **READ)
        recs = recommend(view, state.popular(50), RecommendParams(), now=1_700_000_000.0)
        cf = [r for r in recs.items if r.source is Source.ITEM_CF]
        assert all(math.isfinite(r.score) and r.score > 0 for r in recs.items)
        assert [r.score for r in cf] == sorted((r.score for r in cf), reverse=True)
        contributions = item_cf_scores(view)
        for r in cf:
            # Reasons are the user's own items, and all contributions add up to the score.
            assert r.reasons
            assert {x.item_id for x in r.reasons} <= {i for i, _ in view.recent}
            total = sum(c for c, _ in contributions[r.item_id])
            assert math.isclose(r.score, total)
        assert recs.cold_start == (not view.recent)
        if recs.cold_start:
            assert not cf


def test_cold_start_user_gets_popular_items_marked_as_such() -> None:
    state = _state(
        [
            Event("e1", EventType.PURCHASE, "a", 1e9, item_id="hit"),
            Event("e2", EventType.VIEW, "b", 1e9, item_id="hit"),
            Event("e3", EventType.VIEW, "b", 1e9, item_id="other"),
        ]
    )
    view = state.user_view("newcomer", **READ)
    recs = recommend(view, state.popular(10), RecommendParams(top_n=3), now=1e9)
    assert recs.cold_start
    assert [r.item_id for r in recs.items] == ["hit", "other"]
    assert all(r.source is Source.POPULAR and not r.reasons for r in recs.items)


def test_co_purchased_item_is_recommended_because_of_the_users_item() -> None:
    events = []
    for n, user in enumerate(["a", "b", "c"]):
        events.append(Event(f"p{n}", EventType.PURCHASE, user, 1e9 + n, item_id="phone"))
        events.append(Event(f"c{n}", EventType.PURCHASE, user, 1e9 + n, item_id="case"))
    events.append(Event("x", EventType.VIEW, "d", 1e9 + 9, item_id="phone"))
    state = _state(events)
    recs = recommend(state.user_view("d", **READ), state.popular(10), RecommendParams(), now=1e9)
    top = recs.items[0]
    assert (top.item_id, top.source) == ("case", Source.ITEM_CF)
    assert top.reasons[0].item_id == "phone"
