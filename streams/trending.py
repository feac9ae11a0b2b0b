"""Publish trending lists: every ``trending_interval_s``, each scope that changed gets its
top items (count and velocity over the sliding window) on the ``trending`` topic, keyed by
scope. A scope with items in its window is re-marked so it keeps publishing while its window
slides (counts fall as buckets leave); an empty list is published once, then it goes quiet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from models.trending import GLOBAL_SCOPE, TrendingList
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import Publisher
from streams.store import Store

#: Scopes published per tick at most (the rest wait for the next tick).
MAX_SCOPES_PER_TICK = 500


def trending_json(result: TrendingList, published_at: float) -> bytes:
    """Wire form of one scope's list (schema in topics.yaml).

    >>> from models.trending import TrendingItem
    >>> body = trending_json(TrendingList("stream:s1", 60.0, 10.0, 9.5,
    ...                                   (TrendingItem("i1", 3.0, 0.05, 2),)), 10.0)
    >>> orjson.loads(body)["items"][0]["item_id"], orjson.loads(body)["freshness_s"]
    ('i1', 0.5)
    """
    newest = result.newest_ts
    return orjson.dumps(
        {
            "scope": result.scope,
            "window_s": result.window_s,
            "items": [
                {
                    "item_id": i.item_id,
                    "count": round(i.count, 6),
                    "velocity": round(i.velocity, 6),
                    "events": i.events,
                }
                for i in result.items
            ],
            "as_of": result.as_of,
            "newest_event_at": newest,
            "freshness_s": None if newest is None else round(published_at - newest, 6),
        }
    )


@dataclass
class TrendingPublisher:
    settings: Settings
    store: Store
    publisher: Publisher
    metrics: WorkerMetrics
    #: Called with the global list each time it is published (the ranking fallback).
    on_global: Callable[[list[tuple[str, float]]], None] | None = None

    async def tick(self) -> int:
        """Publish every changed scope once; returns how many were published."""
        scopes = await self.store.take_changed_scopes(MAX_SCOPES_PER_TICK)
        if not scopes:
            return 0
        now = time.time()
        lists = await self.store.trending(scopes, now, self.settings.trending_top_k)
        if self.on_global is not None:
            for result in lists:
                if result.scope == GLOBAL_SCOPE:
                    self.on_global([(i.item_id, i.count) for i in result.items])
        topic = self.settings.topic("trending")
        pending: list[Awaitable[Any]] = []
        for result in lists:
            body = trending_json(result, now)
            pending.append(await self.publisher.send(topic, result.scope.encode(), body, []))
        await asyncio.gather(*pending)
        delivered = time.time()
        for result in lists:
            if result.newest_ts is not None:
                self.metrics.trending_freshness.observe(max(0.0, delivered - result.newest_ts))
        self.metrics.trending_published.inc(len(lists))
        await self.store.mark_changed([r.scope for r in lists if r.items])
        return len(lists)
