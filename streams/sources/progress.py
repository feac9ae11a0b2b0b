"""How far each source has learnt each partition of ``events``, kept with what it learnt.

The learner teaches a batch to MF, content, user-CF, FBT and followees, then to item-CF, whose
atomic step records the batch's events as learnt. A learner killed between the two used to teach
the first sources the batch again after its restart (the chaos run found MF 5 % over its step
count). So each source writes, in the same atomic step as its own state, the last offset of the
batch in each partition (:class:`Learnt`), and learns only the events past its own marks.

The marks are kept per partition of the users (:meth:`Keys.marks`, in their slot: a source's
step over one partition's users is one slot, streams/sources/handoff.py), field
``topic:partition`` of the records (the same partition, unless a record came on another than
its user's). The step is a compare-and-set on them: it writes only if the marks are still
those the source read before learning, and raises :class:`Stale` otherwise. Two cases need it:
a write whose reply was lost (a client timeout while Redis froze) may have been applied, and a
learner stopping after its worker died may finish a batch that the new worker's learner is
learning too. Either way the source reads its marks again and learns only what is still new
(:meth:`streams.sources.SourceSet.learn`).

The marks hold offsets only, no user data. Like the worker's own offsets, they assume a topic's
offsets only grow: an ``events`` topic deleted and made again needs a fresh store.

>>> from models.events import EventType
>>> keys = Keys("sr:", partitions=6)  # u1's partition is 4
>>> progress = Progress(None, keys, {"e1": ("u1", "events:4", 7), "e2": ("u1", "events:4", 8)})
>>> learnt = progress.learnt("mf", {4: {"events:4": 7}})[4]
>>> learnt.key, dict(learnt.fields)
('sr:{4.11}lm:mf', {'events:4': 8})
>>> dict(progress.learnt("mf", {4: {"events:4": 20}})[4].fields)  # redelivered after a restart
{'events:4': 20}
>>> [e.event_id for e in progress.unlearnt([Event("e1", EventType.VIEW, "u1", 0.0),
...     Event("e2", EventType.VIEW, "u1", 0.0)], {4: {"events:4": 7}})]
['e2']

Each user's learnt events (written by item-CF's step and by
:class:`streams.runtime.learner_state.LearnerState`, streams/lua/learnt.lua) are an 8-byte
digest of each event id, not the id (often a 36-character UUID), in two generations of sets:
``u:{user}:learnt``, and ``u:{user}:learnt_prev`` once that filled up (:func:`learnt_keys`).
Redis keeps a set of integers as an intset, 8 bytes an event, where the sorted set of
(digest, whole seconds) they were until 6 December took about 18. A generation holds half the
dedupe window (:func:`learnt_generation`), so the user's latest half window to whole window of
events are remembered, in the order they were learnt. Two ids of a user sharing a digest
(2**-64 a pair) would at worst have the second taken as learnt already, and skipped.

>>> learnt_member("e1"), learnt_keys(Keys("sr:"), "u1"), learnt_generation(10_000)
('292540415853092123', ('sr:{4.11}u:u1:learnt', 'sr:{4.11}u:u1:learnt_prev'), 5000)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from models.events import Event
from models.state.seen import event_digest
from streams.keys import Keys, decoded


def learnt_member(event_id: str) -> str:
    """An event's member in a user's learnt events: its id's 8-byte digest, as the worker's
    dedupe window keeps it too (:func:`models.state.seen.event_digest`)."""
    return event_digest(event_id)


def learnt_keys(keys: Keys, user_id: str) -> tuple[str, str]:
    """The user's learnt ids: the current generation, and the previous one."""
    return keys.user(user_id, "learnt"), keys.user(user_id, "learnt_prev")


def learnt_generation(dedupe_window: int) -> int:
    """Ids a generation holds before it becomes the previous one: half the window (0, for a
    window of 0: one generation, never dropped)."""
    return (dedupe_window + 1) // 2


class Stale(Exception):
    """A source's marks moved since it read them: what it learnt is (partly) learnt already."""


class WentBack(Exception):
    """Redis holds a source's marks below what this process wrote: it came back older (a crash
    lost its last second) after the batch's start, so the batch is not contiguous with what
    Redis holds. ``resume``: per record partition, the offset to read again from."""

    def __init__(self, resume: Mapping[str, int]) -> None:
        super().__init__(sorted(resume))  # record partitions only, no ids
        self.resume = dict(resume)


@dataclass(slots=True)
class Learnt:
    """The marks a source writes with its state for one partition's users, those it read
    before, and each of their events of the batch in order (id, record's partition, offset);
    ``committed`` once a step wrote ``fields``."""

    key: str
    fields: Mapping[str, int]
    read: Mapping[str, int]
    events: Sequence[tuple[str, str, int]] = ()
    committed: bool = False

    def through(self, event_id: str) -> dict[str, int]:
        """The marks once the events up to ``event_id`` (in the batch's order) are learnt:
        for a source that writes one partition's events in several steps (MF, in order)."""
        marks = dict(self.read)
        for seen, part, offset in self.events:
            marks[part] = max(offset, marks.get(part, offset))
            if seen == event_id:
                break
        return marks


#: A source's marks for one batch, per partition of the users.
Marks = Mapping[int, Learnt]


@dataclass
class Written:
    """The marks this process wrote, per source and partition of the users.

    Marks only move forward, and a batch learns only the events past them, so a Redis that
    came back older while a batch was learnt would have a source learn this batch on top of
    marks that lost the previous one: the events between would never be learnt. The learner
    checks the batch's start against what Redis stored (``Learner.rewind``), and every source
    checks its marks against these before each attempt, since an outage waited out within a
    batch may hide such a restart.

    >>> written = Written()
    >>> written.remember("mf", {4: Learnt("k", {}, {"events:4": 9})})
    >>> written.check("mf", {4: {"events:4": 9}})
    >>> written.check("mf", {4: {"events:4": 5}})
    Traceback (most recent call last):
    ...
    streams.sources.progress.WentBack: ['events:4']
    """

    marks: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)

    def check(self, source: str, read: Mapping[int, Mapping[str, int]]) -> None:
        """Raise :class:`WentBack` if Redis holds less than was written (``read``: per
        partition of the users, the marks Redis holds)."""
        back: dict[str, int] = {}
        for p, held in read.items():
            for part, wrote in self.marks.get((source, p), {}).items():
                if held.get(part, -1) < wrote:
                    back[part] = min(back.get(part, wrote), held.get(part, -1) + 1)
        if back:
            raise WentBack(back)

    def remember(self, source: str, learnt: Marks) -> None:
        """The marks a batch's steps left (``Learnt.read`` is what a step last wrote)."""
        for p, marks in learnt.items():
            mine = self.marks.setdefault((source, p), {})
            for part, offset in marks.read.items():
                mine[part] = max(mine.get(part, -1), offset)


class Progress:
    """One batch's positions: ``positions`` maps each event id to its user and its record's
    partition and offset."""

    def __init__(
        self,
        client: aioredis.Redis | None,
        keys: Keys,
        positions: Mapping[str, tuple[str, str, int]],
    ) -> None:
        self.client, self.keys, self.positions = client, keys, positions
        #: Per partition of the users, its events in the batch's order.
        self.parts: dict[int, list[tuple[str, str, int]]] = {}
        for event_id, (user, part, offset) in positions.items():
            slot = keys.partition_of(user)
            self.parts.setdefault(slot, []).append((event_id, part, offset))

    async def marks(self, source: str) -> dict[int, dict[str, int]]:
        """The source's marks, per partition of the batch's users: partition -> last offset
        learnt (one round trip)."""
        assert self.client is not None
        async with self.client.pipeline(transaction=False) as pipe:
            for p in self.parts:
                pipe.hgetall(self.keys.marks(source, p))
            replies = await pipe.execute()
        return {
            p: {decoded(f): int(v) for f, v in raw.items()}
            for p, raw in zip(self.parts, replies, strict=True)
        }

    def learnt(self, source: str, read: Mapping[int, Mapping[str, int]]) -> Marks:
        """Per partition of the users, the marks to write after learning this batch, given
        those ``read`` before.

        Marks only move forward. A restarted learner reads again from its group's last commit,
        which may be behind the marks: a batch of only such events would otherwise set a mark
        back, and the events between would be learnt twice (the chaos run found MF 12 steps
        over).
        """
        found = {}
        for p, events in self.parts.items():
            before = read.get(p, {})
            fields: dict[str, int] = {}
            for _, part, offset in events:
                fields[part] = max(offset, fields.get(part, before.get(part, offset)))
            found[p] = Learnt(self.keys.marks(source, p), fields, dict(before), events)
        return found

    def unlearnt(
        self, events: Sequence[Event], marks: Mapping[int, Mapping[str, int]]
    ) -> list[Event]:
        """The events past ``marks``, in order."""
        found = []
        for e in events:
            user, partition, offset = self.positions[e.event_id]
            if offset > marks.get(self.keys.partition_of(user), {}).get(partition, -1):
                found.append(e)
        return found
