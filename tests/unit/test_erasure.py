"""Erasure: after `erase(u)` nothing of u is left, and everyone else's state is what it would
have been had u never existed (exact, except for what the docstring of MemoryState.erase
lists as unrecoverable; the caps here are large so none of that applies)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import Event, EventType
from models.popularity import decayed_score
from models.state import MemoryState, StateParams
from tests.unit.strategies import event_streams

PARAMS = StateParams(
    history_size=4, cooccurrence_window=4, cooccurrence_cap=10_000, popularity_cap=10_000
)
#: Everything per user except the dedupe window's unlogged events: other users' own event ids
#: stay theirs, even the ids of their (now erased) follows of the victim ("logged": the
#: window's events that added to popularity).
PER_USER_FIELDS = (
    "history",
    "affinity",
    "bought",
    "hidden",
    "logged",
    "following",
    "followers",
    "inbox",
    "outbox",
    "senders",
    "actions",
    "seen_items",
)


def _mentions(value: Any, needle: str) -> bool:
    if isinstance(value, str):
        return value == needle or needle in value.split("\t")
    if isinstance(value, dict):
        return any(_mentions(k, needle) or _mentions(v, needle) for k, v in value.items())
    if isinstance(value, set | list | tuple):
        return any(_mentions(v, needle) for v in value)
    return False


def _fields(user: dict[str, Any]) -> dict[str, Any]:
    """A user's snapshot with "logged": the window's entries that carry a weight and item."""
    seen = user.get("seen_events", {})
    return {**user, "logged": {k: v for k, v in seen.items() if "\t" in v}}


def _targets(event: Event, user: str) -> bool:
    return event.type in (EventType.FOLLOW, EventType.UNFOLLOW) and event.target_user_id == user


def _without_target(event: Event, user: str) -> Event:
    """A share to the erased user stays the sharer's action, but reaches nobody."""
    if event.type is EventType.SHARE and event.target_user_id == user:
        return dataclasses.replace(event, target_user_id=None)
    return event


def _popularity_now(state: MemoryState, at: float) -> dict[str, float]:
    landmark = state.landmark or 0.0
    return {
        item: decayed_score(v, landmark=landmark, at=at, half_life_s=state.params.half_life_s)
        for item, v in state.popularity.scores.items()
    }


def _close(a: dict[str, float], b: dict[str, float]) -> None:
    assert set(a) == set(b)
    for key, value in a.items():
        assert math.isclose(value, b[key], rel_tol=1e-9, abs_tol=1e-9), key


@given(event_streams(), st.data())
@settings(max_examples=60, deadline=None)
def test_erased_user_leaves_no_trace_and_others_are_as_if_never_there(
    events: list[Event], data: st.DataObject
) -> None:
    named = sorted({e.user_id for e in events} | {e.target_user_id or "" for e in events} - {""})
    victim = data.draw(st.sampled_from(named or ["nobody"]))
    erased = MemoryState(PARAMS)
    erased.apply_batch(events)
    erased.erase(victim)

    never = MemoryState(PARAMS)
    never.apply_batch(
        [
            _without_target(e, victim)
            for e in events
            if e.user_id != victim and not _targets(e, victim)
        ]
    )

    after, expected = erased.snapshot(), never.snapshot()
    # Popularity is kept per partition: its keys are partition numbers, which an id can equal.
    scanned = {k: v for k, v in after.items() if k not in ("landmark", "popularity")}
    popularity: dict[str, Any] = after["popularity"]  # type: ignore[assignment]
    assert not _mentions([scanned, list(popularity.values())], victim)
    assert victim not in after["users"]  # type: ignore[operator]

    users_after: dict[str, dict[str, Any]] = after["users"]  # type: ignore[assignment]
    users_expected: dict[str, dict[str, Any]] = expected["users"]  # type: ignore[assignment]
    for user in set(users_after) | set(users_expected):
        for field in PER_USER_FIELDS:
            got = _fields(users_after.get(user, {})).get(field) or None
            want = _fields(users_expected.get(user, {})).get(field) or None
            assert got == want, (user, field)
    last = max((e.ts for e in events), default=0.0)
    _close(_popularity_now(erased, last), _popularity_now(never, last))


def test_erasure_report_counts_without_repeating_data() -> None:
    state = MemoryState(StateParams())
    state.apply(Event("a", EventType.VIEW, "ann", 1e9, item_id="x"))
    state.apply(Event("b", EventType.CART, "ann", 1e9 + 1, item_id="y"))
    state.apply(Event("c", EventType.FOLLOW, "ann", 1e9 + 2, target_user_id="bob"))
    state.apply(Event("d", EventType.FOLLOW, "cat", 1e9 + 3, target_user_id="ann"))
    report = state.erase("ann")
    assert (report.history_items, report.logged_events, report.follow_edges) == (2, 2, 2)
    assert "ann" not in state.users
    assert state.users["cat"].following == set()
    assert state.users["bob"].followers == set()
    assert state.erase("nobody").history_items == 0
