"""Publish trending lists: every ``trending_interval_s``, each scope that changed gets its
top items (count and velocity over the sliding window) on the ``trending`` topic, keyed by
scope. A scope with items in its window is re-published at every bucket boundary even without
new events, because its window slides (counts fall as buckets leave); an empty list is
published once, then it goes quiet.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.trending import GLOBAL_SCOPE, TrendingList
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import Publisher
from streams.store import Store

log = logging.getLogger(__name__)

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
    #: Scopes whose last list had items: without new events their windows still slide, but
    #: only at bucket boundaries, so they are re-marked once per bucket, not every tick.
    active: set[str] = field(default_factory=set)
    slid_at: int | None = None
    clock: Callable[[], float] = time.time
    #: Called with each list and its publish time once Kafka has it (in-process subscribers
    #: such as the hosts' live page, streams/live.py). Must not block; errors are logged.
    listeners: list[Callable[[TrendingList, float], None]] = field(default_factory=list)

    async def tick(self) -> int:
        """Publish every changed scope once; returns how many were published."""
        now = self.clock()
        bucket = math.floor(now / self.settings.trending_bucket_s)
        if bucket != self.slid_at:
            self.slid_at = bucket
            await self.store.mark_changed(sorted(self.active))
        scopes = await self.store.take_changed_scopes(MAX_SCOPES_PER_TICK)
        if not scopes:
            return 0
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
        delivered = self.clock()
        for result in lists:
            if result.newest_ts is not None:
                self.metrics.trending_freshness.observe(max(0.0, delivered - result.newest_ts))
        self.metrics.trending_published.inc(len(lists))
        for result in lists:
            for listener in self.listeners:
                try:
                    listener(result, now)
                except Exception:  # a subscriber's bug must not stop publishing
                    log.exception("trending listener failed")
        for result in lists:
            if result.items:
                self.active.add(result.scope)
            else:
                self.active.discard(result.scope)
        return len(lists)
