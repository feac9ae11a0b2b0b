"""How far each source has learnt each partition of ``events``, kept with what it learnt.

The learner teaches a batch to MF, content, user-CF, FBT and followees, then to item-CF, whose
atomic step records the batch's events as learnt. A learner killed between the two used to teach
the first sources the batch again after its restart (the chaos run found MF 5 % over its step
count). So each source writes, in the same ``MULTI`` as its own state, the last offset of the
batch in each partition (:class:`Learnt`), and learns only the events past its own marks.

The ``MULTI`` is a compare-and-set on the marks (:func:`commit`): it runs only if the marks are
still those the source read before learning, and raises :class:`Stale` otherwise. Two cases
need it: a write whose reply was lost (a client timeout while Redis froze) may have been
applied, and a learner stopping after its worker died may finish a batch that the new
worker's learner is learning too. Either way the source reads its marks again and learns only
what is still new (:meth:`streams.sources.SourceSet.learn`).

The marks hold offsets only, no user data: one hash per source (:meth:`Keys.marks`), field
``topic:partition``. Like the worker's own offsets, they assume a topic's offsets only grow: an
``events`` topic deleted and made again needs a fresh store.

>>> from models.events import EventType
>>> progress = Progress(None, Keys("sr:"), {"e1": ("events:0", 7), "e2": ("events:0", 8)})
>>> learnt = progress.learnt("mf", {"events:0": 7})
>>> learnt.key, dict(learnt.fields)
('sr:lm:mf', {'events:0': 8})
>>> dict(progress.learnt("mf", {"events:0": 20}).fields)  # a slice redelivered after a restart
{'events:0': 20}
>>> [e.event_id for e in progress.unlearnt([Event("e1", EventType.VIEW, "u", 0.0),
...     Event("e2", EventType.VIEW, "u", 0.0)], {"events:0": 7})]
['e2']

Each user's learnt events (``u:{user}:learnt``, a zset written by item-CF's step and by
:class:`streams.runtime.learner_state.LearnerState`) hold :func:`learnt_entry` pairs: an
8-byte digest of the event id, not the id (often a 36-character UUID), and whole seconds, not
the float time. Redis keeps both as integers in the compact zset encoding: 18 bytes an event
instead of 36 (the simulator's 12-character ids) or 61 (UUIDs). The time only orders the
window; two ids of a user sharing a digest (2**-64 a pair) would at worst have the second
taken as learnt already, and skipped.

>>> learnt_entry(Event("e1", EventType.VIEW, "u", 1700000000.75))
(1700000000, '292540415853092123')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from models.events import Event
from models.state.seen import event_digest
from streams.keys import Keys, decoded


def learnt_member(event_id: str) -> str:
    """An event's member in a user's learnt events: its id's 8-byte digest, as the worker's
    dedupe window keeps it too (:func:`models.state.seen.event_digest`)."""
    return event_digest(event_id)


def learnt_entry(event: Event) -> tuple[int, str]:
    """(score, member) of ``event`` in its user's learnt events: whole seconds, digest."""
    return int(event.ts), learnt_member(event.event_id)


class Stale(Exception):
    """A source's marks moved since it read them: what it learnt is (partly) learnt already."""


@dataclass(slots=True)
class Learnt:
    """The marks a source writes with its state for one batch, and those it read before;
    ``committed`` once :func:`commit` wrote them."""

    key: str
    fields: Mapping[str, int]
    read: Mapping[str, int]
    committed: bool = False


async def commit(
    client: aioredis.Redis, learnt: Learnt | None, queue: Callable[[Any], None]
) -> None:
    """One ``MULTI`` of what ``queue`` puts on the pipeline, with ``learnt``'s marks.

    With marks it runs only if they are still what was read (``WATCH``, then a compare), and
    raises :class:`Stale` if not; without (the worker's inline learning) it just runs.
    """
    try:
        async with client.pipeline(transaction=True) as pipe:
            if learnt is not None and learnt.fields:
                partitions = list(learnt.fields)
                await pipe.watch(learnt.key)
                now = await pipe.hmget(learnt.key, partitions)
                if [None if v is None else int(v) for v in now] != [
                    learnt.read.get(p) for p in partitions
                ]:
                    raise Stale
                pipe.multi()  # type: ignore[no-untyped-call]
                queue(pipe)
                pipe.hset(learnt.key, mapping={p: str(o) for p, o in learnt.fields.items()})
            else:
                queue(pipe)
            await pipe.execute()
        if learnt is not None:
            learnt.committed = True
    except WatchError as exc:
        # Also what redis-py raises when the connection drops while watching (an outage):
        # the caller reads the marks again, which waits the outage out.
        raise Stale from exc


class Progress:
    """One batch's positions: ``positions`` maps each event id to (partition, offset)."""

    def __init__(
        self,
        client: aioredis.Redis | None,
        keys: Keys,
        positions: Mapping[str, tuple[str, int]],
    ) -> None:
        self.client, self.keys, self.positions = client, keys, positions
        ends: dict[str, int] = {}
        for partition, offset in positions.values():
            ends[partition] = max(offset, ends.get(partition, offset))
        self.ends = ends

    async def marks(self, source: str) -> dict[str, int]:
        """The source's marks: partition -> last offset learnt (one read)."""
        assert self.client is not None
        raw = await self.client.hgetall(self.keys.marks(source))
        return {decoded(f): int(v) for f, v in raw.items()}

    def learnt(self, source: str, read: Mapping[str, int]) -> Learnt:
        """The marks to write after learning this batch, given those ``read`` before.

        Marks only move forward. A restarted learner reads again from its group's last commit,
        which may be behind the marks: a batch of only such events would otherwise set a mark
        back, and the events between would be learnt twice (the chaos run found MF 12 steps
        over).
        """
        fields = {p: max(end, read.get(p, end)) for p, end in self.ends.items()}
        return Learnt(self.keys.marks(source), fields, dict(read))

    def unlearnt(self, events: Sequence[Event], marks: Mapping[str, int]) -> list[Event]:
        """The events past ``marks``, in order."""
        found = []
        for e in events:
            partition, offset = self.positions[e.event_id]
            if offset > marks.get(partition, -1):
                found.append(e)
        return found
