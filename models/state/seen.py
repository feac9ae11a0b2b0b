"""A user's dedupe window: the events applied lately, by digest, with what erasure needs.

One hash per user (``u:{user}:seen_events``; streams/lua/state.lua keeps the Redis twin).
Field: the event id's 8-byte digest (:func:`event_digest`). Value: the event's time, and for
an event that added to popularity also its weight and item, ``"ts<TAB>weight<TAB>item"``, so
an erasure can take it back out. Numbers are kept as Python printed them, in both stores.

It used to be a sorted set of ids beside a hash of the logged events, and the sorted set of a
user with more than 128 events left Redis's compact encoding: one hash of digests is about
40 bytes an event against about 70 (115 with those users), and one key a user instead of two.

A hash keeps no order, so the window is trimmed in steps: when it holds more than
:func:`trim_at` events it goes back to the user's ``size`` latest (by time), and field
:data:`FLOOR` keeps the time of the latest event trimmed away. An event at or before the
floor and not in the window is a replay from beyond it: a duplicate, never news. So every
applied event is either in the window or at or before the floor, and none is applied twice.
Events sharing a time are trimmed together or not at all, so a window may keep more than
``size`` when the oldest kept time is shared.

>>> seen = SeenEvents()
>>> [seen.add(event_digest(f"e{n}"), 10.0 + n, (1.0, "i"), size=2) for n in range(3)]
[True, True, True]
>>> len(seen), seen.holds(event_digest("e0"), 10.0), seen.entries[FLOOR]
(2, True, '10.0')
>>> seen.holds(event_digest("e9"), 10.0), seen.holds(event_digest("e9"), 10.5)
(True, False)
>>> seen.logged()
[('i', 1.0, 11.0), ('i', 1.0, 12.0)]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

#: The field holding the time of the latest event trimmed away (digests are never empty).
FLOOR: Final = ""


def event_digest(event_id: str) -> str:
    """An event id's 8-byte digest as a signed decimal integer: what Redis stores in 8 bytes
    (a listpack's integer), and what JSON and Lua pass as text. Two ids of one user sharing
    a digest (2**-64 a pair) would have the second taken as a duplicate."""
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return str(int.from_bytes(digest, "little", signed=True))


def trim_at(size: int) -> int:
    """The most events a window of ``size`` holds before it is trimmed back to ``size``:
    an eighth more, so the sort a trim needs comes once per ``size // 8`` events."""
    return size + size // 8


def _time(entry: str) -> float:
    return float(entry.partition("\t")[0])


def logged_entry(entry: str) -> tuple[float, float, str] | None:
    r"""(time, weight, item) of an entry of a logged event; None for another entry.

    >>> logged_entry("12.5\t3.0\ti1"), logged_entry("12.5")
    ((12.5, 3.0, 'i1'), None)
    """
    ts, tab, rest = entry.partition("\t")
    if not tab:
        return None
    weight, _, item = rest.partition("\t")
    return float(ts), float(weight), item


@dataclass(slots=True)
class SeenEvents:
    """One user's window: digest -> entry text, as Redis's hash holds it."""

    entries: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entries) - (FLOOR in self.entries)

    def holds(self, digest: str, ts: float) -> bool:
        """Was the event applied already (in the window, or at or before its floor)?"""
        floor = self.entries.get(FLOOR)
        return digest in self.entries or (floor is not None and ts <= float(floor))

    def add(self, digest: str, ts: float, logged: tuple[float, str] | None, size: int) -> bool:
        """Keep an event (with its weight and item if ``logged``); False if the trim this
        calls for took it straight back out: older than every event kept, not news."""
        text = repr(ts)
        self.entries[digest] = text if logged is None else f"{text}\t{logged[0]!r}\t{logged[1]}"
        if len(self) > trim_at(size):
            self._trim(size)
        return digest in self.entries

    def _trim(self, size: int) -> None:
        """Back to the ``size`` latest events, and those sharing the oldest kept time."""
        times = sorted(_time(v) for k, v in self.entries.items() if k != FLOOR)
        cutoff = times[len(times) - size]
        gone = [k for k, v in self.entries.items() if k != FLOOR and _time(v) < cutoff]
        if gone:
            floor = max(gone, key=lambda k: _time(self.entries[k]))
            self.entries[FLOOR] = self.entries[floor].partition("\t")[0]
            for digest in gone:
                del self.entries[digest]

    def logged(self) -> list[tuple[str, float, float]]:
        """(item, weight, time) of the logged events, oldest first (ties as they came)."""
        found = []
        for digest, entry in self.entries.items():
            if digest != FLOOR and (logged := logged_entry(entry)) is not None:
                ts, weight, item = logged
                found.append((item, weight, ts))
        return sorted(found, key=lambda logged: logged[2])
