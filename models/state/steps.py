"""Popularity's numbers for a step of events or an erasure, worked out once, here.

:class:`~models.state.MemoryState` applies them itself; the Redis store hands them to the
state script (streams/lua/state.lua), which only writes them. A step of one partition's events
counts from one landmark (:func:`models.popularity.step_landmark`): the stored one, or a newer
one when the step's events would push the stored scores towards overflow.

>>> from models.events import Event, EventType
>>> params = StateParams(half_life_s=10.0)
>>> events = [Event("e1", EventType.VIEW, "u1", 20.0, item_id="a"),
...           Event("f1", EventType.FOLLOW, "u1", 30.0, target_user_id="u2")]
>>> step = popularity_step(params, 10.0, events)
>>> step.landmark, step.factor, step.amounts
(10.0, None, [2.0, 0.0])
>>> withdrawal(params, 10.0, weight=1.0, ts=20.0)
(2.0, 2e-09)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.events import Event
from models.popularity import forward_weight, step_landmark
from models.state.views import ZERO, StateParams


@dataclass(frozen=True, slots=True)
class PopularityStep:
    """What a step does to its partition's popularity."""

    landmark: float | None  # counted from (None: no event adds popularity, none stored)
    factor: float | None  # the stored scores are multiplied by it first (None: unchanged)
    amounts: list[float]  # per event, what it adds to its item (0.0: nothing)


def adds_popularity(params: StateParams, event: Event) -> bool:
    """Whether ``event``, once applied, adds to its item's popularity."""
    return event.item_id is not None and params.weight(event.type) > 0.0


def popularity_step(
    params: StateParams, landmark: float | None, events: Sequence[Event]
) -> PopularityStep:
    """The landmark, rebase factor and amounts of a step of ``events`` (those the step will
    find duplicates or erased included: the landmark moves the same either way)."""
    half_life = params.half_life_s
    adding = [adds_popularity(params, e) for e in events]
    times = [e.ts for e, adds in zip(events, adding, strict=True) if adds]
    landmark, factor = step_landmark(landmark, times, half_life)
    amounts = [0.0] * len(events)
    if landmark is not None:
        for n, (event, adds) in enumerate(zip(events, adding, strict=True)):
            if adds:
                weight = params.weight(event.type)
                amounts[n] = forward_weight(
                    weight, ts=event.ts, landmark=landmark, half_life_s=half_life
                )
    return PopularityStep(landmark, factor, amounts)


def withdrawal(
    params: StateParams, landmark: float, *, weight: float, ts: float
) -> tuple[float, float]:
    """What an erased user's logged event of ``weight`` at ``ts`` takes out of its item's
    popularity, and at or below what the item's sum is then zero (every contribution gone:
    rounding leaves a trace that must not keep the item listed)."""
    amount = forward_weight(weight, ts=ts, landmark=landmark, half_life_s=params.half_life_s)
    return amount, amount * ZERO
