"""How far each source has learnt each partition of ``events``, kept with what it learnt.

The learner teaches a batch to MF, content, user-CF and FBT, then to item-CF, whose atomic step
records the batch's events as learnt. A learner killed between the two used to teach the first
sources the batch again after its restart (the chaos run found MF 5 % over its step count). So
each source writes, in the same ``MULTI`` as its own state, the last offset of the batch in
each partition (:class:`Learnt`); after a restart the learner gives each source only the events
past its own mark (:meth:`Progress.unlearnt`). The marks hold offsets only, no user data; they
live in the learner's hash (``learner``), one field per source and partition. Like the
worker's own offsets, they assume a topic's offsets only grow: an ``events`` topic deleted
and made again needs a fresh store.

>>> progress = Progress("sr:learner", {"e1": ("events:0", 7), "e2": ("events:0", 8)})
>>> progress.learnt("mf").fields
{'mf@events:0': 8}
>>> [e for e in ["e1", "e2"] if progress.is_new("mf", e, {"mf@events:0": 7})]
['e2']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from models.events import Event
from streams.keys import decoded


@dataclass(frozen=True, slots=True)
class Learnt:
    """The marks a source writes with its state for one batch."""

    key: str
    fields: Mapping[str, int]

    def write(self, pipe: Any) -> None:
        """Queue the marks on ``pipe``: the source's own ``MULTI``."""
        if self.fields:
            pipe.hset(self.key, mapping=dict(self.fields))


class Progress:
    """One batch's positions: ``positions`` maps each event id to (partition, offset)."""

    def __init__(self, key: str, positions: Mapping[str, tuple[str, int]]) -> None:
        self.key, self.positions = key, positions
        ends: dict[str, int] = {}
        for partition, offset in positions.values():
            ends[partition] = max(offset, ends.get(partition, offset))
        self.ends = ends

    def learnt(self, source: str) -> Learnt:
        return Learnt(self.key, {f"{source}@{p}": end for p, end in self.ends.items()})

    def is_new(self, source: str, event_id: str, marks: Mapping[str, int]) -> bool:
        partition, offset = self.positions[event_id]
        return offset > marks.get(f"{source}@{partition}", -1)

    async def marks(self, client: aioredis.Redis) -> dict[str, int]:
        """Every source's marks (one read per batch)."""
        raw = await client.hgetall(self.key)
        return {decoded(f): int(v) for f, v in raw.items() if b"@" in f}

    def unlearnt(
        self, source: str, events: Sequence[Event], marks: Mapping[str, int]
    ) -> list[Event]:
        return [e for e in events if self.is_new(source, e.event_id, marks)]
