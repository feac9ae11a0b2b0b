"""The erasure rule both stores and the learner apply to events in flight.

A user's erasure leaves an anonymous mark (user digest -> erasure time, for as long as topics
keep events). An event that reached Kafka before its user's mark is dropped. One aimed at a
user erased since (a share's recipient, a follow's followee) is its own user's action: it is
applied without its target, so nothing it writes names the erased user.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from models.events import Event


def in_flight(event: Event, arrival: float, marks: Mapping[str, float]) -> Event | None:
    """What of ``event`` (reached Kafka at ``arrival``) may be applied, given ``marks`` (user
    -> erasure time): nothing if its user was erased at or after that moment (applying it would
    bring back what the receipt said was gone), the event without its target if only the
    target was, else all of it.

    Redis's twins are in streams/lua/state.lua: ``erased_since`` for the user in the step,
    and for the target when its change is delivered in its own slot (``relay`` then takes the
    target back out of the user's sets).

    >>> from models.events import EventType
    >>> e = Event("s1", EventType.SHARE, "bob", 1.0, item_id="b", target_user_id="ann")
    >>> in_flight(e, 5.0, {"ann": 6.0}).target_user_id, in_flight(e, 7.0, {"ann": 6.0}) is e
    (None, True)
    >>> in_flight(e, 5.0, {"bob": 6.0}) is None
    True
    """

    def erased(user: str | None) -> bool:
        return user is not None and (at := marks.get(user)) is not None and arrival <= at

    if erased(event.user_id):
        return None
    if erased(event.target_user_id):
        return dataclasses.replace(event, target_user_id=None)
    return event
