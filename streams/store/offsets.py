"""Offsets ride with the state they produce: a partition's applied and published offsets.

Each batch's state step records its records' offsets in the same atomic step as the state and
first checks that the stored ones are those the consumer last saw (README, "Offsets live with
the state"). Both stores use these types and rules; Redis's twin of :func:`check_offsets` and
:func:`advance` is in streams/lua/state.lua.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


def partition_number(partition: str) -> int:
    """The number of a ``topic:partition`` name.

    >>> partition_number("events:3")
    3
    """
    return int(partition.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """A batch's records of one partition, and what the consumer knows of that partition.

    The store keeps, per partition, the last offset whose event its state holds (*applied*,
    written in the same atomic step as the state) and the last offset whose lists Kafka
    confirmed (*published*, the previous batch's, carried by the next one).
    """

    partition: str  # "events:3"
    first: int
    last: int
    expected: int  # the applied offset this consumer last saw stored (-1: not known)
    published: int  # lists confirmed up to here (-1: none yet)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a partition's state is: its applied and published offsets (-1: none)."""

    applied: int
    published: int


@dataclass(frozen=True, slots=True)
class Step:
    """One atomic step of a batch: the events of one partition's users (their indexes in the
    batch) and that partition's offsets, all in its slot (streams/keys.py)."""

    partition: int
    events: list[int] = field(default_factory=list)
    offsets: list[OffsetRange] = field(default_factory=list)


def partition_steps(
    partition_of: Callable[[str], int], users: Sequence[str], offsets: Sequence[OffsetRange]
) -> list[Step]:
    """A batch cut into one step per partition, in the order both stores apply them: steps
    without offsets first (an event whose record came on another partition than its user's
    goes with its user), so offsets stored by a worker that dies between steps cover no event
    whose step did not run.

    >>> r = OffsetRange("events:1", first=7, last=8, expected=6, published=4)
    >>> [(s.partition, s.events, len(s.offsets)) for s in partition_steps(
    ...     lambda u: int(u[1]), ["u1", "u0", "u1"], [r])]
    [(0, [1], 0), (1, [0, 2], 1)]
    """
    steps: dict[int, Step] = {}
    for n, user in enumerate(users):
        steps.setdefault(partition_of(user), Step(partition_of(user))).events.append(n)
    for r in offsets:
        number = partition_number(r.partition)
        steps.setdefault(number, Step(number)).offsets.append(r)
    return sorted(steps.values(), key=lambda step: bool(step.offsets))


def step_rounds(
    positions: Sequence[tuple[int, int]], ranges: Sequence[OffsetRange], most: int
) -> list[tuple[list[int], list[OffsetRange]]]:
    """A batch's events (each one's record partition and offset, in consumption order) cut
    into rounds of at most ``most`` events of each partition, with the offset ranges of each
    round: a partition's first round starts where its range does, each later one where the
    round before ended and expects it applied, and its last ends where its range does.

    One atomic step holds Redis for as long as its events take; rounds bound that while the
    batch (and its one list per user) stays as large as the backlog allows.

    >>> r = OffsetRange("events:1", first=7, last=11, expected=6, published=4)
    >>> for events, rs in step_rounds([(1, 7), (1, 8), (1, 10), (0, 3)], [r], most=2):
    ...     print(events, [(x.first, x.last, x.expected) for x in rs])
    [0, 1, 3] [(7, 8, 6)]
    [2] [(9, 11, 8)]
    """
    chunks: dict[int, list[list[int]]] = {}
    for n, (partition, _offset) in enumerate(positions):
        mine = chunks.setdefault(partition, [[]])
        if len(mine[-1]) == most:
            mine.append([])
        mine[-1].append(n)
    count = max((len(c) for c in chunks.values()), default=1)
    rounds: list[tuple[list[int], list[OffsetRange]]] = [([], []) for _ in range(count)]
    for cut in chunks.values():
        for n, events in enumerate(cut):
            rounds[n][0].extend(events)
    for r in ranges:
        cut = chunks.get(partition_number(r.partition), [[]])
        first, expected = r.first, r.expected
        for n, events in enumerate(cut):
            last = r.last if n == len(cut) - 1 else positions[events[-1]][1]
            rounds[n][1].append(OffsetRange(r.partition, first, last, expected, r.published))
            first, expected = last + 1, last
    for events, _ranges in rounds:
        events.sort()
    return rounds


def check_offsets(
    stored: Mapping[str, Position], offsets: Sequence[OffsetRange]
) -> dict[str, Position]:
    """The partitions whose stored applied offset is behind what the consumer expected.

    >>> r = OffsetRange("events:0", first=11, last=20, expected=10, published=10)
    >>> check_offsets({"events:0": Position(10, 10)}, [r])
    {}
    >>> check_offsets({"events:0": Position(7, 5)}, [r])
    {'events:0': Position(applied=7, published=5)}
    >>> check_offsets({}, [r])  # the store lost everything
    {'events:0': Position(applied=-1, published=-1)}
    """
    behind = {}
    for r in offsets:
        position = stored.get(r.partition, Position(-1, -1))
        if r.expected >= 0 and position.applied < r.expected:
            behind[r.partition] = position
    return behind


def advance(stored: dict[str, Position], offsets: Sequence[OffsetRange]) -> None:
    """Record a batch's offsets (never moving a partition backwards)."""
    for r in offsets:
        was = stored.get(r.partition, Position(-1, -1))
        stored[r.partition] = Position(max(was.applied, r.last), max(was.published, r.published))


#: KEYS: the offsets hash; ARGV: partition, offset, ...: each published offset moves forward,
#: never past the applied one, and only for partitions with an applied offset.
MARK_PUBLISHED_LUA = """
for i = 1, #ARGV, 2 do
  local part, offset = ARGV[i], tonumber(ARGV[i + 1])
  local applied = tonumber(redis.call('HGET', KEYS[1], part) or '-1')
  local field = part .. ':published'
  local was = tonumber(redis.call('HGET', KEYS[1], field) or '-1')
  if applied >= 0 and offset > was then
    redis.call('HSET', KEYS[1], field, math.min(offset, applied))
  end
end
return 0
"""
