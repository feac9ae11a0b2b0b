"""Popularity's numbers for the state script, worked out in Python (models/state/steps.py).

Each partition's popularity counts from a landmark stored beside it. The script is handed the
landmark the worker knows, the step's new landmark and rebase factor, and each event's amount;
it writes nothing when the stored landmark is another (a second writer came between) and
answers with it, and the step is worked out again. The worker learns a partition's landmark
once, then follows what its own steps write, so a step needs no read first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from models.events import Event
from models.state import StateParams
from models.state.seen import FLOOR, logged_entry
from models.state.steps import popularity_step, withdrawal
from streams.keys import Keys, decoded
from streams.store.lua import command, run


class Landmarks:
    """The stored landmark of each partition's popularity, as this store last saw it: its
    text exactly as stored ("" none)."""

    def __init__(self, keys: Keys, params: StateParams) -> None:
        self.keys = keys
        self.params = params
        self.known: dict[int, str] = {}

    async def learn(self, client: Any, partitions: Iterable[int]) -> None:
        """Read the landmarks of partitions not seen yet (one round trip, once each)."""
        unknown = sorted({p for p in partitions if p not in self.known})
        if unknown:
            calls = [command("GET", self.keys.partition(p, "landmark")) for p in unknown]
            for p, raw in zip(unknown, await run(client, calls), strict=True):
                self.known[p] = "" if raw is None else decoded(raw)

    def step(self, partition: int, events: Sequence[Event]) -> tuple[list[str], list[str]]:
        """A step's popularity arguments (known landmark, new landmark, factor: "" when
        unchanged) and each event's amount, as text."""
        known = self.known[partition]
        step = popularity_step(self.params, float(known) if known else None, events)
        moved = "" if step.landmark is None else repr(step.landmark)
        args = [known, "" if moved == known else moved, _text(step.factor)]
        return args, [repr(amount) for amount in step.amounts]

    def stepped(self, partition: int, args: Sequence[str]) -> None:
        """A step with these arguments was applied."""
        if args[1]:
            self.known[partition] = args[1]

    def found(self, partition: int, stored: Any) -> None:
        """The script found another landmark stored."""
        self.known[partition] = decoded(stored) if stored else ""

    async def withdrawals(self, client: Any, user: str) -> tuple[str, bytes]:
        """For an erasure of ``user``: their partition's landmark and JSON {event digest:
        [amount, zero]} of each event they logged (read now; the script says if they
        changed)."""
        partition = self.keys.partition_of(user)
        landmark, seen = await run(
            client,
            [
                command("GET", self.keys.partition(partition, "landmark")),
                command("HGETALL", self.keys.user(user, "seen_events")),
            ],
        )
        self.found(partition, landmark)
        known = self.known[partition]
        amounts: dict[str, list[str]] = {}
        if known:
            for digest, entry in _pairs(seen):
                logged = None if digest == FLOOR else logged_entry(decoded(entry))
                if logged is not None:
                    ts, weight, _ = logged
                    amount, zero = withdrawal(self.params, float(known), weight=weight, ts=ts)
                    amounts[digest] = [repr(amount), repr(zero)]
        return known, orjson.dumps(amounts)


def _text(value: float | None) -> str:
    return "" if value is None else repr(value)


def _pairs(reply: Any) -> list[tuple[str, Any]]:
    """(member or field, value) pairs of a WITHSCORES or HGETALL reply, flat (RESP2) or not."""
    if isinstance(reply, dict):
        return [(decoded(k), v) for k, v in reply.items()]
    if reply and isinstance(reply[0], (list, tuple)):
        return [(decoded(k), v) for k, v in reply]
    flat = iter(reply)
    return [(decoded(k), v) for k, v in zip(flat, flat, strict=True)]
