"""A partition's step planned in Python before the state script writes it.

The script holds no recommendation maths: whether each event is news (the dedupe window) and
the affinity an item event leaves (the clamp) are worked out by models/state/plan.py, the
reference's own code. So a step is two calls of streams/lua/state.lua in the partition's slot:

1. ``plan`` reads what that needs of the step's users (:class:`~models.state.plan.Facts`: the
   dedupe window's entries for the step's events, or all of it when the step could trim it;
   the history; the affinities) and the partition's version;
2. ``process`` is handed each event's verdict and affinity with that version, and refuses,
   writing nothing, if the version moved (every step and erasure on the partition bumps it:
   another worker's step, an erasure in between, a Redis that came back older) or an event
   is refused here (an erased user's, or one whose keys hold the wrong type) that the plan
   applied, or the other way round. The store then reads, plans and steps again.

The reads of the batch's plans are one round trip, pipelined over its partitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from models.events import Event
from models.state.plan import Facts, plan_step
from models.state.views import StateParams
from streams.keys import decoded
from streams.store.script import json_array


@dataclass(frozen=True, slots=True)
class Plan:
    """A step's plan: the version of the partition it was read at, and per event of the step
    its verdict and the affinity its item is left with (models/state/plan.py)."""

    version: str
    events: list[tuple[str, str]]


def plan_users(events: Sequence[Event], digests: Sequence[str], stem: Any) -> bytes:
    """The ``plan`` call's records: each user of the step with their key stem and the digests
    of their events (``stem(user)``: streams/keys.py Keys.user_stem)."""
    users: dict[str, list[str]] = {}
    for event, digest in zip(events, digests, strict=True):
        users.setdefault(event.user_id, []).append(digest)
    return orjson.dumps([[user, stem(user), found] for user, found in users.items()])


def plan_of(
    raw: Any, events: Sequence[Event], gates: Mapping[int, int], params: StateParams
) -> Plan:
    """The plan of a step's ``events`` from the ``plan`` call's reply. ``gates``: the outcome
    of each event (by index in the step) the script said it refuses (:func:`refused`)."""
    version, users = orjson.loads(raw)
    facts = {}
    for user, history, affinity, window in users:
        found = Facts()
        history, affinity, window = json_array(history), json_array(affinity), json_array(window)
        found.history.scores.update(zip(history[::2], map(float, history[1::2]), strict=True))
        found.affinity.update(zip(affinity[::2], map(float, affinity[1::2]), strict=True))
        found.seen.entries.update(zip(window[::2], window[1::2], strict=True))
        facts[user] = found
    return Plan(str(version), plan_step(events, facts, gates, params))


def refused(raw: Any) -> tuple[str, Any] | None:
    """Why a step wrote nothing, if it did not: ``("landmark", the stored landmark)`` (popularity's,
    streams/store/landmarks.py) or ``("replan", {event index: the outcome it is refused
    with})``; None for a step that was written."""
    head = raw[0]
    if not isinstance(head, (bytes, str)):
        return None
    reason = decoded(head)
    if reason == "replan":
        gates = orjson.loads(raw[1]) if raw[1] else []
        return reason, {n: int(g) for n, g in enumerate(json_array(gates)) if int(g)}
    return reason, raw[1]
