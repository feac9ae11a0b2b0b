"""Hypothesis strategies shared by the unit tests: small worlds so collisions are frequent,
named with ids from the whole alphabet the validators accept (tests/fuzz/ids.py)."""

from __future__ import annotations

from hypothesis import strategies as st

from models.events import Event, EventType
from tests.fuzz.ids import ids

ITEM_TYPES = [
    EventType.VIEW,
    EventType.LIKE,
    EventType.SHARE,
    EventType.CART,
    EventType.PURCHASE,
    EventType.HIDE,
]
USERS, ITEMS = 6, 10


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Distinct user and item ids (never the same string, so a scan for a user's id never
    meets an item that happens to share it)."""
    names = draw(st.lists(ids, min_size=USERS + ITEMS, max_size=USERS + ITEMS, unique=True))
    return names[:USERS], names[USERS:]


@st.composite
def event_streams(draw: st.DrawFn, max_size: int = 60) -> list[Event]:
    """Time-ordered streams of item, follow and unfollow events, with some redeliveries."""
    users, items = draw(worlds())
    user_ids, item_ids = st.sampled_from(users), st.sampled_from(items)
    count = draw(st.integers(min_value=0, max_value=max_size))
    ts = 1_700_000_000.0
    events: list[Event] = []
    for n in range(count):
        ts += draw(st.floats(min_value=0.0, max_value=4000.0, allow_nan=False))
        user = draw(user_ids)
        kind = draw(st.sampled_from([*ITEM_TYPES, EventType.FOLLOW, EventType.UNFOLLOW]))
        if kind in (EventType.FOLLOW, EventType.UNFOLLOW):
            others = [other for other in users if other != user]
            followee = draw(st.sampled_from(others))
            events.append(Event(f"e{n}", kind, user, ts, target_user_id=followee))
        else:
            target = draw(user_ids) if kind is EventType.SHARE else None
            item = draw(item_ids)
            events.append(Event(f"e{n}", kind, user, ts, item_id=item, target_user_id=target))
        redeliver: bool = draw(st.integers(min_value=0, max_value=3)) == 0
        if events and redeliver:
            events.append(events[draw(st.integers(0, len(events) - 1))])  # a redelivery
    return events


def strings_in(value: object) -> set[str]:
    """Every string anywhere in a nested snapshot (keys and values): erasure tests scan it."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(strings_in(k) | strings_in(v) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        return set().union(*(strings_in(v) for v in value))
    return set()
