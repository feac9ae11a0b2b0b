"""Following the shared catalogue into a local copy: the content source's model and the HTTP
search index both keep one.

The catalogue is ``content_items`` (hash item -> JSON record) and ``content_changes`` (a
stream of item ids, approximately trimmed), both in the ``{content}`` slot and changed together
by :meth:`CatalogFollower.write` (streams/sources/content_catalogue.py calls it).
:meth:`CatalogFollower.sync` reads the stream from its last position (one round trip when
nothing changed) and hands the changed records to the owner; the first call, and any call
after entries past the position were trimmed (the stream's ``entries-added`` counter and the
entries read disagree), reloads every record instead. Both are one-slot scripts
(streams/lua/catalogue.lua), so they run alike on one Redis and on a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
import redis.asyncio as aioredis

from streams.keys import Keys, decoded
from streams.sources.content_records import blob, entry_items
from streams.store.lua import Lua, hash_reply, lua_text

log = logging.getLogger(__name__)

_SCRIPT: Final = Lua(lua_text("catalogue.lua"))
#: Item ids per change-stream entry (one entry per put or delete of up to this many items).
IDS_PER_ENTRY: Final = 256

#: Changed records, item -> JSON record (None: the item is gone); returns how many applied.
Apply = Callable[[Mapping[str, bytes | None]], int]


@dataclass(slots=True)
class Position:
    last_id: str  # last change-stream entry applied
    added: int  # the stream's entries-added counter at that entry


def stream_state(reply: Sequence[Any]) -> tuple[int, str]:
    """(entries-added, last-generated-id) of the script's reply.

    >>> stream_state([3, b"7-0"])
    (3, '7-0')
    """
    return int(reply[0]), decoded(reply[1])


class CatalogFollower:
    """Keeps a local copy current: ``apply`` takes the changed records, ``known`` names the
    items the copy holds (a reload removes those Redis no longer has)."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        *,
        apply: Apply,
        known: Callable[[], Iterable[str]],
        interval_s: float,
        clock: Callable[[], float],
        read_count: int = 10_000,
        scan_count: int = 1_000,
        name: str = "catalogue",
    ) -> None:
        self.client = client
        self.items_key = keys.global_("content_items")
        self.stream_key = keys.global_("content_changes")
        self.position: Position | None = None
        self._apply, self._known = apply, known
        self.interval_s, self._clock = interval_s, clock
        self._read_count, self._scan_count, self._name = read_count, scan_count, name
        self._synced_at = -float("inf")
        self._lock = asyncio.Lock()

    async def sync_if_due(self) -> None:
        if self._clock() - self._synced_at >= self.interval_s:
            await self.sync()

    async def sync(self) -> int:
        """Apply the changes since the last sync; returns how many items changed locally."""
        async with self._lock:
            self._synced_at = self._clock()
            if self.position is None:
                return await self._reload()
            reply = await _SCRIPT(
                self.client, self.stream_key, ["read", self.position.last_id, self._read_count]
            )
            added, _ = stream_state(reply)
            entries = reply[2]
            if added != self.position.added + len(entries):
                log.info("%s change stream was trimmed past this copy: reloading", self._name)
                return await self._reload()
            if not entries:
                return 0
            changed = (i for _, fields in entries for i in entry_items(hash_reply(fields)))
            ids = list(dict.fromkeys(changed))
            values = await self.client.hmget(self.items_key, ids)
            self.position = Position(decoded(entries[-1][0]), added)
            return self._apply({i: blob(v) for i, v in zip(ids, values, strict=True)})

    async def _reload(self) -> int:
        # The position first: changes during the scan are replayed by the next sync.
        reply = await _SCRIPT(self.client, self.stream_key, ["read", "0-0", 0])
        added, last_id = stream_state(reply)
        loaded: dict[str, bytes | None] = {}
        async for item, value in self.client.hscan_iter(self.items_key, count=self._scan_count):
            loaded[decoded(item)] = blob(value)
        for item in set(self._known()) - loaded.keys():
            loaded[item] = None
        self.position = Position(last_id, added)
        return self._apply(loaded)

    async def write(
        self, records: Mapping[str, bytes], removed: Sequence[str], maxlen: int
    ) -> None:
        """Store ``records`` (item -> JSON record), delete ``removed`` and announce them all,
        in one step (the stream trimmed to about ``maxlen`` entries); then move past the
        announcement when nobody else wrote in between, so the next sync does not read back
        what the copy has already."""
        ids = [*records, *removed]
        chunks = [ids[n : n + IDS_PER_ENTRY] for n in range(0, len(ids), IDS_PER_ENTRY)]
        before = self.position
        args: list[Any] = ["write", self.items_key, maxlen, len(records)]
        args += [v for item, record in records.items() for v in (item, record)]
        args += [len(removed), *removed, *(orjson.dumps(chunk) for chunk in chunks)]
        added, last_id = stream_state(await _SCRIPT(self.client, self.stream_key, args))
        if before is not None and added == before.added + len(chunks) and before is self.position:
            self.position = Position(last_id, added)
