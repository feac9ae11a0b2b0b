"""The catalogue's text index in worker memory, following the catalogue through Redis.

Why in memory: a query must scan postings of a few concepts over the whole catalogue in well
under a millisecond, and every worker can rebuild the index from Redis at any time, so it is a
cache, not state. Its feed is the one the content source already keeps
(streams/sources/content_catalogue.py): ``content_items`` (item -> JSON catalogue record) and the
``content_changes`` stream of changed item ids. The index loads everything once, then reads the
stream from its last position (at most every ``sync_interval_s``, one round trip when nothing
changed) and reloads when the stream was trimmed past that position. So search needs the
content source to be enabled (it is by default: ``SOCIALREC_SOURCES``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from models.textsearch import TextIndex
from streams.keys import Keys, decoded
from streams.sources.content_records import entry_items

log = logging.getLogger(__name__)


class CatalogSearch:
    """A :class:`TextIndex` of every catalogue item, kept current from Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys | None = None,
        *,
        sync_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.index = TextIndex()
        self.titles: dict[str, str] = {}
        self.sync_interval_s = sync_interval_s
        self._clock = clock
        self._items_key = self.keys.global_("content_items")
        self._stream_key = self.keys.global_("content_changes")
        self._position: tuple[str, int] | None = None  # (last id, entries-added)
        self._synced_at = -float("inf")
        self._lock = asyncio.Lock()

    async def sync_if_due(self) -> None:
        if self._clock() - self._synced_at >= self.sync_interval_s:
            await self.sync()

    async def sync(self) -> int:
        """Apply catalogue changes since the last sync; returns how many items changed."""
        async with self._lock:
            self._synced_at = self._clock()
            if self._position is None:
                return await self._reload()
            last_id, added_before = self._position
            pipe = self.client.pipeline(transaction=True)
            pipe.xinfo_stream(self._stream_key)
            pipe.xread({self._stream_key: last_id}, count=10_000)
            info, read = await pipe.execute(raise_on_error=False)
            added, _ = self._stream_state(info)
            entries = read[0][1] if isinstance(read, list) and read else []
            if added != added_before + len(entries):
                log.info("catalogue change stream was trimmed past the search index: reloading")
                return await self._reload()
            if not entries:
                return 0
            ids = list(dict.fromkeys(i for _, fields in entries for i in entry_items(fields)))
            values = await self.client.hmget(self._items_key, ids)
            self._position = (decoded(entries[-1][0]), added)
            return self._apply(dict(zip(ids, values, strict=True)))

    async def _reload(self) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.xinfo_stream(self._stream_key)
        (info,) = await pipe.execute(raise_on_error=False)
        added, last_id = self._stream_state(info)
        loaded: dict[str, Any] = {}
        async for item, value in self.client.hscan_iter(self._items_key, count=1000):
            loaded[decoded(item)] = value
        for item in set(self.titles) - loaded.keys():
            loaded[item] = None
        self._position = (last_id, added)
        return self._apply(loaded)

    def _apply(self, changes: Mapping[str, Any]) -> int:
        bad = 0
        for item_id, value in changes.items():
            if value is None:
                self.index.remove(item_id)
                self.titles.pop(item_id, None)
                continue
            try:
                record = orjson.loads(value)
                tags = record.get("tags") or []
                self.index.add(
                    item_id,
                    title=str(record.get("title") or ""),
                    category=str(record.get("category") or ""),
                    brand=str(record.get("brand") or ""),
                    tags=[str(t) for t in tags] if isinstance(tags, list) else [],
                )
                self.titles[item_id] = str(record.get("title") or "")
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                bad += 1
        if bad:
            log.warning("search index skipped %d malformed catalogue records", bad)
        return len(changes) - bad

    @staticmethod
    def _stream_state(info: object) -> tuple[int, str]:
        if not isinstance(info, dict):
            return 0, "0-0"
        return int(info["entries-added"]), decoded(info["last-generated-id"])
