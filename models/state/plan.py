"""What a step does to its users' dedupe windows, histories and affinities, decided in Python.

Both stores take these decisions here, once: :class:`~models.state.memory.MemoryState` on its
own users, and the Redis store on what it read of the step's users just before (:class:`Facts`),
handing the state script (streams/lua/state.lua) each event's verdict and the affinity it
leaves, which the script writes as given. So the script holds no recommendation maths (the
affinity clamp is :func:`models.similarity.affinity_after`), and it refuses a plan made from
facts that another step changed since they were read (streams/store/plan.py).

A verdict is :data:`FRESH` (applied), :data:`HELD` (a duplicate: nothing of it is written) or
:data:`TRIMMED` (recorded in the window, whose trim took it straight back out: older than
every event the window keeps, so not news either); or the outcome the script gave an event
it refused whatever the window says (erased, or keys of the wrong kind): ``"2"``, ``"3"``.

>>> from models.events import Event, EventType
>>> params = StateParams(history_size=2)
>>> facts = {"u": Facts()}
>>> events = [Event(f"e{n}", EventType.VIEW, "u", 1.5 + n, item_id=i)
...           for n, i in enumerate(["a", "b", "a", "c"])]
>>> plan_step(events + events[:1], facts, {}, params)
[('a', '1.0'), ('a', '1.0'), ('a', '2.0'), ('a', '1.0'), ('h', '')]
>>> facts["u"].history.ordered(), facts["u"].affinity
(['a', 'c'], {'a': 2.0, 'c': 1.0})
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from models.events import Event, EventType
from models.similarity import affinity_after
from models.sortedset import SortedSet
from models.state.seen import SeenEvents, event_digest
from models.state.views import StateParams

FRESH: Final = "a"
HELD: Final = "h"
TRIMMED: Final = "t"

_FOLLOWS: Final = (EventType.FOLLOW, EventType.UNFOLLOW)


@dataclass(slots=True)
class Facts:
    """What a step reads of one user to plan their events: the dedupe window (whole, or the
    entries of the step's events and the floor when no trim can come within the step), the
    history and the affinities. A plan updates them as the step will."""

    seen: SeenEvents = field(default_factory=SeenEvents)
    history: SortedSet = field(default_factory=SortedSet)
    affinity: dict[str, float] = field(default_factory=dict)


def event_item(event: Event) -> str | None:
    """The item an event counts for (none for a follow or unfollow of someone)."""
    if event.type in _FOLLOWS and event.target_user_id is not None:
        return None
    return event.item_id


def admit(seen: SeenEvents, event: Event, params: StateParams) -> str:
    """The dedupe window's verdict on ``event``, recording it if it is not held already.
    Events that add to popularity keep their weight and item, for erasure."""
    digest = event_digest(event.event_id)
    if seen.holds(digest, event.ts):
        return HELD
    item, weight = event_item(event), params.weight(event.type)
    logged = (weight, item) if item is not None and weight > 0.0 else None
    return FRESH if seen.add(digest, event.ts, logged, params.dedupe_window) else TRIMMED


def scored_at(ts: float) -> float:
    """An event's score in its user's sorted sets of items: whole seconds, enough to order
    and expire them (Redis keeps an integer score in 5 bytes, a fraction in 14 characters)."""
    return float(math.floor(ts))


def touch(
    history: SortedSet,
    affinity: dict[str, float],
    item: str,
    weight: float,
    at: float,
    params: StateParams,
) -> float:
    """An item event's change to its user's affinity (weights add up within ``[0, cap]``) and
    history (an item at zero leaves it; the oldest beyond the size are evicted with their
    affinities). Returns the item's affinity after it."""
    new = affinity_after(affinity.get(item, 0.0), weight, cap=params.affinity_cap)
    if new > 0.0:
        previous = history.scores.get(item)
        history.scores[item] = at if previous is None else max(previous, at)
        affinity[item] = new
    else:
        history.scores.pop(item, None)
        affinity.pop(item, None)
    for evicted in history.trim_to(params.history_size):
        del affinity[evicted]
    return new


def plan_step(
    events: Sequence[Event],
    facts: Mapping[str, Facts],
    gates: Mapping[int, int],
    params: StateParams,
) -> list[tuple[str, str]]:
    """Each event's verdict, and the affinity its item is left with as text (``""`` unless an
    applied item event), in order. ``gates``: the outcome of each event (by index) the script
    refuses whatever its window says. ``facts`` (by user) are updated as the step will."""
    planned = []
    for n, event in enumerate(events):
        gate = gates.get(n, 0)
        if gate:
            planned.append((str(gate), ""))
            continue
        user = facts[event.user_id]
        verdict = admit(user.seen, event, params)
        item = event_item(event)
        if verdict != FRESH or item is None:
            planned.append((verdict, ""))
            continue
        weight = params.weight(event.type)
        new = touch(user.history, user.affinity, item, weight, scored_at(event.ts), params)
        planned.append((verdict, repr(new)))
    return planned
