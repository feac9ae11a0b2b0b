"""Delivering what a partition's step did to users of other partitions.

A step runs in its partition's slot (streams/keys.py), so a share's recipient, a follow's
followee or an erased user's counterparts in another partition cannot be written there. The
step appends each such change to its partition's relay list, in the same atomic step
(streams/lua/state.lua ``affect``), and returns the entries not delivered yet; the store
delivers them right after, one "relay" call per source and target partition, each in the
target's slot. The target's ``relayed`` hash keeps the last entry applied from each source,
so an entry delivered twice (a worker that died before recording it, a second deliverer)
changes nothing, and the source's next step trims what was delivered.

>>> entry = '[7,"share","bob","sr:{2.2}u:bob:","sr:{2.2}x:…","ann","phone","1.0","2.0"]'
>>> relay_calls({0: [entry]})
[(0, 2, ['[7,"share","bob","sr:{2.2}u:bob:","sr:{2.2}x:…","ann","phone","1.0","2.0"]'])]
>>> last_seq([entry])
7
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from streams.keys import tag_partition


def relay_calls(pending: Mapping[int, Sequence[str]]) -> list[tuple[int, int, list[str]]]:
    """(source partition, target partition, entries in order) per delivery call."""
    calls: dict[tuple[int, int], list[str]] = {}
    for source, entries in pending.items():
        for raw in entries:
            target = tag_partition(orjson.loads(raw)[3])  # the target's key stem
            calls.setdefault((source, target), []).append(raw)
    return [(source, target, entries) for (source, target), entries in calls.items()]


def last_seq(entries: Sequence[str]) -> int:
    """The newest entry's sequence number (0: none)."""
    return max((int(orjson.loads(raw)[0]) for raw in entries), default=0)
