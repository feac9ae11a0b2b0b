"""The learner's steps, one Redis Cluster slot each, and what they hand to other slots.

A source's step writes in one slot: a partition's users' keys (or its items', streams/keys.py)
with the source's marks there (streams/sources/progress.py: a compare-and-set, so a retried
or a second learner's step changes nothing). What the step changes in another slot (a shared
table, an item's row, another user's index) it hands off in the same atomic step: an entry
appended to the slot's hand-off list (``ho:<kind>``), numbered by the slot's counter. The
entries are then applied in their target slots, each once (the target keeps the number of
the last entry it applied from each source slot), and dropped from the list once applied
(streams/lua/handoff.lua). So a step and everything it hands off happen exactly once, and an
entry that was not applied when the learner died is applied by the next one (:meth:`drain`).
What a step writes, and how it is routed to slots: streams/sources/writes.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from streams.keys import Keys, decoded
from streams.sources.progress import Stale
from streams.sources.writes import Step, payload
from streams.store.lua import Arg, Call, Lua, command, lua_text, run


class Refused(Exception):
    """A step refused: the indexes of its refusals that held."""

    def __init__(self, held: list[int]) -> None:
        super().__init__(held)
        self.held = held


def script_text(extension: str = "") -> str:
    """handoff.lua after learnt.lua (the users' learnt ids), with a kind's own ops (a file of
    streams/lua/) before its last line."""
    text = lua_text("learnt.lua") + lua_text("handoff.lua")
    if not extension:
        return text
    body, last = text.rstrip().rsplit("\n", 1)
    return f"{body}\n{lua_text(extension)}\n{last}\n"


class Handoffs:
    """Steps of one kind (a source's name), and the delivery of what they hand off;
    ``extension``: a file of streams/lua/ with the kind's own ops (item-CF's)."""

    def __init__(self, client: aioredis.Redis, keys: Keys, kind: str, extension: str = "") -> None:
        self.client, self.keys, self.kind = client, keys, kind
        self._drained = False
        self._lua = Lua(script_text(extension))

    def _call(self, stem: str, mode: str, *args: Arg) -> Call:
        """A call of the script in the slot ``stem``, routed by its hand-off list."""
        handoffs, counters, applied = self.keys.handoffs(stem, self.kind)
        return self._lua.call(handoffs, [mode, self.kind, counters, applied, *args])

    async def settle(self) -> None:
        """Deliver what may be waiting (at the first call, and after a call that failed: its
        steps may have been applied without their entries being delivered), so what is read
        next holds it."""
        if not self._drained:
            await self.drain()

    async def run(self, steps: Sequence[Step]) -> list[Any]:
        """The steps, in one round trip, then every entry their slots hold for others;
        returns what their ops reported (item-CF's sums). Raises :class:`Stale` if a step's
        marks had moved (the others are written), and :class:`Refused` for a single refused
        step."""
        await self.settle()
        try:
            return await self._run(steps)
        except BaseException:
            self._drained = False  # a reply lost: its steps' entries may be waiting
            raise

    async def _run(self, steps: Sequence[Step]) -> list[Any]:
        replies = await run(self.client, [self._step(step) for step in steps])
        pending: dict[str, list[Any]] = {}
        stale, results = False, []
        for step, reply in zip(steps, replies, strict=True):
            if int(reply[0]) == 1:
                stale = True
            elif int(reply[0]) == 2:
                raise Refused([int(n) for n in reply[1]])
            else:
                if step.learnt is not None:
                    step.learnt.committed = step.upto is None
                    step.learnt.read = dict(step.marks)
                if reply[1]:
                    pending[step.writes.stem] = reply[1]
                results.extend(reply[2])
        results.extend(await self.deliver(pending))
        if stale:
            raise Stale
        return results

    def _step(self, step: Step) -> Call:
        learnt = step.learnt
        control = {
            "expect": {} if learnt is None else {f: learnt.read.get(f, -1) for f in step.marks},
            "marks": dict(step.marks),
            "refuse": step.refuse,
        }
        marks = "" if learnt is None else learnt.key
        body = payload(step.writes.flat())
        return self._call(step.writes.stem, "step", marks, orjson.dumps(control), body)

    def _target(self, raw: bytes) -> str:
        """An entry's target slot: its stem, or an item's home for ``@<item>``."""
        target = decoded(raw)
        if target.startswith("@"):
            return self.keys.partition_stem(self.keys.home(target[1:]))
        return target

    async def deliver(self, pending: Mapping[str, Sequence[Any]]) -> list[Any]:
        """Apply the entries in their targets' slots, then what those hand on, then drop
        them from the lists they came from; returns what the ops reported."""
        delivered: dict[str, int] = {}
        results: list[Any] = []
        while pending:
            calls: dict[tuple[str, str], list[bytes]] = {}
            for source, entries in pending.items():
                for raw in entries:
                    number, target, _ = raw.split(b"\t", 2)
                    calls.setdefault((source, self._target(target)), []).append(raw)
                    delivered[source] = max(delivered.get(source, 0), int(number))
            replies = await run(
                self.client,
                [
                    self._call(target, "apply", source[source.index("{") + 1 : -1], *entries)
                    for (source, target), entries in calls.items()
                ],
            )
            handed: dict[str, list[Any]] = {}
            for (_, target), (_, more, reported) in zip(calls, replies, strict=True):
                if more:
                    handed.setdefault(target, []).extend(more)
                results.extend(reported)
            pending = handed
        if delivered:
            await run(
                self.client,
                [self._call(source, "trim", number) for source, number in delivered.items()],
            )
        return results

    async def drain(self) -> None:
        """Deliver whatever every partition's list still holds (a learner that died, or an
        erasure that stopped, before delivering it)."""
        stems = [self.keys.partition_stem(p) for p in range(self.keys.partitions)]
        lists = await run(
            self.client,
            [command("LRANGE", self.keys.handoffs(stem, self.kind)[0], 0, -1) for stem in stems],
        )
        await self.deliver({s: entries for s, entries in zip(stems, lists, strict=True) if entries})
        self._drained = True
