"""A partition's step planned in Python before the state script writes it.

The script holds no recommendation maths: whether each event is news (the dedupe window) and
the affinity an item event leaves (the clamp) are worked out by models/state/plan.py, the
reference's own code, from what the step's users have stored (:class:`~models.state.plan.Facts`:
the dedupe window's floor and entries, the history, the affinities). The script's ``process``
call is handed each event's verdict and affinity with the partition's version the facts are
from, and refuses, writing nothing, when the version moved (every step and erasure on the
partition bumps it: another worker's step, an erasure in between, a Redis that came back
older), when an event it applies has its digest in the window after all, or when it refuses
an event (an erased user's, one whose keys hold the wrong type) that the plan applied, or the
other way round. The store then reads, plans and steps again.

The facts come from the store's own last step of the partition when it has them for every user
of the step (:class:`KeptFacts`: what that step left, at the version it left; the window's
floor and size only, since the step checks that no applied event's digest is stored), and
otherwise from the script's ``plan`` call (one round trip for the batch's partitions), which
reads the window's entries of the step's events, or all of it when the step could trim it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from models.events import Event
from models.state.plan import FRESH, TRIMMED, Facts, plan_step
from models.state.seen import FLOOR, trim_at
from models.state.views import StateParams
from streams.keys import decoded
from streams.store.script import json_array

#: Users whose facts a store keeps from its own steps (about 5 kB of Python objects each);
#: a user beyond them is read before their step.
KEPT_USERS: Final = 10_000
#: The verdicts that write an event into its user's window.
_RECORDED: Final = (FRESH, TRIMMED)


@dataclass(slots=True)
class Kept:
    """A user's facts and the size of their stored window (fields, its floor's included)."""

    facts: Facts
    size: int


@dataclass(slots=True)
class Plan:
    """A step's plan: the partition's version its facts are from, per event of the step its
    verdict and the affinity its item is left with (models/state/plan.py), and the facts as
    the step leaves them (``users``) beside the other users kept at that version
    (``others``)."""

    version: str
    events: list[tuple[str, str]]
    users: dict[str, Kept] = field(default_factory=dict)
    others: dict[str, Kept] = field(default_factory=dict)


class KeptFacts:
    """What a store's own steps left of each partition's users, at the version they left it
    in. A step's plan takes its partition's (:meth:`take`); only a step written gives them
    back (:meth:`stepped`), so a refused or failed one leaves nothing stale behind."""

    def __init__(self, partitions: int, users: int = KEPT_USERS) -> None:
        self._per_partition = max(1, users // max(1, partitions))
        self._parts: dict[int, tuple[str, dict[str, Kept]]] = {}

    def take(self, partition: int) -> tuple[str, dict[str, Kept]] | None:
        return self._parts.pop(partition, None)

    def stepped(self, partition: int, plan: Plan) -> None:
        """The step of ``plan`` was written: its users' facts hold at the next version."""
        users = plan.others
        for user, kept in plan.users.items():
            users.pop(user, None)  # to the end: the oldest go first
            users[user] = kept
        for user in list(users)[: max(0, len(users) - self._per_partition)]:
            del users[user]
        self._parts[partition] = (str(int(plan.version) + 1), users)

    def drop(self, partition: int) -> None:
        self._parts.pop(partition, None)


def plan_users(events: Sequence[Event], digests: Sequence[str], stem: Any) -> bytes:
    """The ``plan`` call's records: each user of the step with their key stem and the digests
    of their events (``stem(user)``: streams/keys.py Keys.user_stem)."""
    users: dict[str, list[str]] = {}
    for event, digest in zip(events, digests, strict=True):
        users.setdefault(event.user_id, []).append(digest)
    return orjson.dumps([[user, stem(user), found] for user, found in users.items()])


def read_facts(raw: Any) -> tuple[str, dict[str, Kept]]:
    """The partition's version and each user's facts from the ``plan`` call's reply."""
    version, users = orjson.loads(raw)
    found = {}
    for user, history, affinity, window, size in users:
        facts = Facts()
        history, affinity, window = json_array(history), json_array(affinity), json_array(window)
        facts.history.scores.update(zip(history[::2], map(float, history[1::2]), strict=True))
        facts.affinity.update(zip(affinity[::2], map(float, affinity[1::2]), strict=True))
        facts.seen.entries.update(zip(window[::2], window[1::2], strict=True))
        found[user] = Kept(facts, int(size))
    return str(version), found


def can_plan(kept: Mapping[str, Kept], events: Sequence[Event], params: StateParams) -> bool:
    """Whether kept facts plan these events: each user's are there, and no trim of the
    window can come within the step (a trim needs every entry's time)."""
    limit = trim_at(params.dedupe_window)
    counts = Counter(e.user_id for e in events)
    return all(u in kept and kept[u].size + k <= limit for u, k in counts.items())


def plan_from(
    version: str,
    kept: Mapping[str, Kept],
    events: Sequence[Event],
    gates: Mapping[int, int],
    params: StateParams,
) -> Plan:
    """The plan of a step's ``events`` from its users' facts (read, or kept and covering
    them: :func:`can_plan`), which it updates as the step will leave them. ``gates``: the
    outcome of each event (by index in the step) the script said it refuses."""
    users = {e.user_id: kept[e.user_id] for e in events}
    planned = plan_step(events, {u: k.facts for u, k in users.items()}, gates, params)
    limit = trim_at(params.dedupe_window)
    added = Counter(e.user_id for e, (v, _) in zip(events, planned, strict=True) if v in _RECORDED)
    for user, k in users.items():
        entries = k.facts.seen.entries
        # A window read whole may have been trimmed by the plan; either way only its floor is
        # kept (the step checks that no applied event's digest is stored).
        k.size = len(entries) if k.size + added[user] > limit else k.size + added[user]
        floor = entries.get(FLOOR)
        entries.clear()
        if floor is not None:
            entries[FLOOR] = floor
    return Plan(version, planned, users)


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
