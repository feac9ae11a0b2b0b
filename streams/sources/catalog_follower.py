"""Following the shared catalogue into a local copy: the content source's model and the HTTP
search index both keep one.

The catalogue is ``content_items`` (hash item -> JSON record) and ``content_changes`` (a
stream of item ids, approximately trimmed; streams/sources/content_catalogue.py writes both).
:meth:`CatalogFollower.sync` reads the stream from its last position (one round trip when
nothing changed) and hands the changed records to the owner; the first call, and any call
after entries past the position were trimmed (the stream's ``entries-added`` counter and the
entries read disagree), reloads every record instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from streams.keys import Keys, decoded
from streams.sources.content_records import blob, entry_items

log = logging.getLogger(__name__)

#: Changed records, item -> JSON record (None: the item is gone); returns how many applied.
Apply = Callable[[Mapping[str, bytes | None]], int]


@dataclass(slots=True)
class Position:
    last_id: str  # last change-stream entry applied
    added: int  # the stream's entries-added counter at that entry


def stream_state(info: object) -> tuple[int, str]:
    """(entries-added, last-generated-id) of an ``XINFO STREAM`` reply; a missing stream has
    had nothing added.

    >>> stream_state({"entries-added": 3, "last-generated-id": b"7-0"}), stream_state(None)
    ((3, '7-0'), (0, '0-0'))
    """
    if not isinstance(info, dict):
        return 0, "0-0"
    return int(info["entries-added"]), decoded(info["last-generated-id"])


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
            pipe = self.client.pipeline(transaction=True)
            pipe.xinfo_stream(self.stream_key)
            pipe.xread({self.stream_key: self.position.last_id}, count=self._read_count)
            info, read = await pipe.execute(raise_on_error=False)
            added, _ = stream_state(info)
            entries = read[0][1] if isinstance(read, list) and read else []
            if added != self.position.added + len(entries):
                log.info("%s change stream was trimmed past this copy: reloading", self._name)
                return await self._reload()
            if not entries:
                return 0
            ids = list(dict.fromkeys(i for _, fields in entries for i in entry_items(fields)))
            values = await self.client.hmget(self.items_key, ids)
            self.position = Position(decoded(entries[-1][0]), added)
            return self._apply({i: blob(v) for i, v in zip(ids, values, strict=True)})

    async def _reload(self) -> int:
        # The position first: changes during the scan are replayed by the next sync.
        pipe = self.client.pipeline(transaction=True)
        pipe.xinfo_stream(self.stream_key)
        (info,) = await pipe.execute(raise_on_error=False)
        added, last_id = stream_state(info)
        loaded: dict[str, bytes | None] = {}
        async for item, value in self.client.hscan_iter(self.items_key, count=self._scan_count):
            loaded[decoded(item)] = blob(value)
        for item in set(self._known()) - loaded.keys():
            loaded[item] = None
        self.position = Position(last_id, added)
        return self._apply(loaded)

    def skip_own(self, before: Position | None, entries: int, info: object) -> None:
        """After this process wrote ``entries`` stream entries (``info``: the stream's
        ``XINFO`` right after, ``before``: the position when the write began): move past them
        when nobody else wrote in between, so the next sync does not read back what the copy
        has already."""
        added, last_id = stream_state(info)
        if before is not None and added == before.added + entries and before is self.position:
            self.position = Position(last_id, added)
