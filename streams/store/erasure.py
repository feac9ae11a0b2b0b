"""The erasure rule both stores and the learner apply to events in flight.

A user's erasure leaves an anonymous mark (user digest -> erasure time, for as long as topics
keep events); an event that reached Kafka before that time is dropped, not applied.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.events import Event


def erased_in_flight(event: Event, arrival: float, marks: Mapping[str, float]) -> bool:
    """Whether ``event`` (reached Kafka at ``arrival``) is of, or aimed at, a user erased at
    or after that moment (``marks``: user -> erasure time). Such an event was in flight when
    the erasure was honoured: applying it would bring back state the receipt said was gone.
    Redis's twin is ``erased_since`` in streams/lua/state.lua.

    >>> from models.events import EventType
    >>> e = Event("s1", EventType.SHARE, "bob", 1.0, item_id="b", target_user_id="ann")
    >>> erased_in_flight(e, 5.0, {"ann": 6.0}), erased_in_flight(e, 7.0, {"ann": 6.0})
    (True, False)
    """
    return any(
        (at := marks.get(user)) is not None and arrival <= at
        for user in (event.user_id, event.target_user_id)
        if user
    )
