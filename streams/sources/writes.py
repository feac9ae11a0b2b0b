"""What a learner step writes: ops in its own slot, and ops it hands to other slots.

An op is a Redis command or one of streams/lua/handoff.lua's own (``!live``, ``!out``,
``!incr``, ``!hincr``, ``!zincr``), with its arguments. A step's ops travel as one binary-safe
argument (:func:`payload`), and so does what it hands off.

>>> payload([["SET", "k", b"\\x00"], ["INCRBY", "n", 2]])
b'[[3,1,1],[6,1,1]]\\nSETk\\x00INCRBYn2'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from models.events import Event
from streams.keys import Keys
from streams.sources.progress import Learnt, Marks
from streams.store.lua import Arg

#: An op's arguments: a command (or one of handoff.lua's) and what it takes.
Op = list[Arg]


def _raw(arg: Arg) -> bytes:
    return arg if isinstance(arg, bytes) else str(arg).encode()  # str of a float is its repr


def payload(ops: Sequence[Op]) -> bytes:
    """Ops as handoff.lua takes them: a JSON header of their arguments' lengths, then the
    arguments' bytes (binary-safe, and one argument for the whole list)."""
    raws = [[_raw(a) for a in op] for op in ops]
    header = orjson.dumps([[len(a) for a in op] for op in raws])
    return header + b"\n" + b"".join(a for op in raws for a in op)


@dataclass
class Writes:
    """What one step writes: ops in its own slot, and ops handed to each other slot. An op
    goes where its key (its second argument) lives, unless it is added with :meth:`to`."""

    keys: Keys
    stem: str  # the step's slot (Keys.stem_of)
    ops: list[Op] = field(default_factory=list)
    out: dict[str, list[Op]] = field(default_factory=dict)

    def add(self, *op: Arg) -> None:
        target = self.keys.stem_of(str(op[1]))
        self.to(target, list(op))

    def to(self, target: str, *ops: Op) -> None:
        """``ops`` to run in the slot ``target`` (here if it is this step's)."""
        if target == self.stem:
            self.ops.extend(ops)
        else:
            self.out.setdefault(target, []).extend(ops)

    def flat(self) -> list[Op]:
        """One ``!out`` per other slot, then the own ops: what the own ops hand on comes after
        the step's own entries in the list (item-CF's dropped pairs after its increments)."""
        outs: list[Op] = [["!out", stem, payload(ops)] for stem, ops in self.out.items()]
        return outs + self.ops

    def guarded(self, mark: str, block: Writes) -> None:
        """``block`` (built for this slot) runs only while ``mark`` does not exist."""
        inner = block.flat()
        if inner:
            self.ops.append(["!live", mark, len(inner), 0])
            self.ops.extend(inner)

    def __bool__(self) -> bool:
        return bool(self.ops or self.out)


def partition_runs(keys: Keys, events: Sequence[Event]) -> list[tuple[int, list[Event]]]:
    """The events cut into runs of consecutive events of one partition's users, in order: a
    source whose learning depends on the order (MF's shared rows) takes a step per run.

    >>> from models.events import EventType
    >>> runs = partition_runs(Keys("sr:", partitions=6), [Event(str(n), EventType.VIEW, u, 0.0)
    ...     for n, u in enumerate(["u1", "u1", "zoe", "u1"])])
    >>> [(p, [e.event_id for e in run]) for p, run in runs]
    [(4, ['0', '1']), (5, ['2']), (4, ['3'])]
    """
    runs: list[tuple[int, list[Event]]] = []
    for event in events:
        part = keys.partition_of(event.user_id)
        if not runs or runs[-1][0] != part:
            runs.append((part, []))
        runs[-1][1].append(event)
    return runs


def partition_order(keys: Keys, events: Sequence[Event]) -> list[Event]:
    """The events one partition's users after another (in the order each partition first
    appears), each partition's in their order: how the learner hands a batch to the sources,
    so each takes a step per partition, not one per change of partition. Kafka orders a
    partition's events only, so no order is lost.

    >>> from models.events import EventType
    >>> order = partition_order(Keys("sr:", partitions=6), [Event(str(n), EventType.VIEW, u, 0.0)
    ...     for n, u in enumerate(["u1", "zoe", "u1"])])
    >>> [e.event_id for e in order]
    ['0', '2', '1']
    """
    runs: dict[int, list[Event]] = {}
    for event in events:
        runs.setdefault(keys.partition_of(event.user_id), []).append(event)
    return [e for run in runs.values() for e in run]


class ByPartition(dict[int, Writes]):
    """A batch's writes, one :class:`Writes` per partition of the users it changes."""

    def __init__(self, keys: Keys) -> None:
        super().__init__()
        self.names = keys  # not ``keys``: a dict has a method of that name

    def __missing__(self, partition: int) -> Writes:
        found = self[partition] = Writes(self.names, self.names.partition_stem(partition))
        return found

    def user(self, user_id: str) -> Writes:
        """The writes of the user's partition."""
        return self[self.names.partition_of(user_id)]

    def steps(self, learnt: Marks | None = None) -> list[Step]:
        """A step per partition, each with its marks (if any)."""
        return [Step(w, None if learnt is None else learnt[p]) for p, w in self.items()]


@dataclass
class Step:
    """One step: its writes, its marks (None: none to check or move; ``upto``: other marks
    than ``learnt``'s, for a step that learns part of the partition's events), and what
    refuses it (``["exists", key]`` or ``["zscore", key, member]``: nothing is written if
    one holds)."""

    writes: Writes
    learnt: Learnt | None = None
    refuse: list[list[str]] = field(default_factory=list)
    upto: Mapping[str, int] | None = None

    @property
    def marks(self) -> Mapping[str, int]:
        if self.learnt is None:
            return {}
        return self.learnt.fields if self.upto is None else self.upto
