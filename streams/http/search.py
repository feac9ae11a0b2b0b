"""The catalogue's text index in worker memory, following the catalogue through Redis.

Why in memory: a query must scan postings of a few concepts over the whole catalogue in well
under a millisecond, and every worker can rebuild the index from Redis at any time, so it is a
cache, not state. Its feed is the one the content source already keeps
(streams/sources/content_catalogue.py): ``content_items`` (item -> JSON catalogue record) and the
``content_changes`` stream of changed item ids, followed as the content source follows them
(:class:`streams.sources.catalog_follower.CatalogFollower`, at most every ``sync_interval_s``).
So search needs the content source to be enabled (it is by default: ``SOCIALREC_SOURCES``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import orjson
import redis.asyncio as aioredis

from models.textsearch import TextIndex
from streams.keys import Keys
from streams.sources.catalog_follower import CatalogFollower

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
        self.keys = keys or Keys()
        self.index = TextIndex()
        self.titles: dict[str, str] = {}
        self.follower = CatalogFollower(
            client,
            self.keys,
            apply=self._apply,
            known=lambda: self.titles,
            interval_s=sync_interval_s,
            clock=clock,
            name="search index",
        )

    async def sync_if_due(self) -> None:
        await self.follower.sync_if_due()

    async def sync(self) -> int:
        """Apply catalogue changes since the last sync; returns how many items changed."""
        return await self.follower.sync()

    def _apply(self, changes: Mapping[str, bytes | None]) -> int:
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
