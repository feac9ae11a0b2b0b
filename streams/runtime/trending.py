"""Publish trending lists: every ``trending_interval_s``, each scope that changed gets its
top items (count and velocity over the sliding window) on the ``trending`` topic, keyed by
scope. A scope with items in its window is re-published at every bucket boundary even without
new events, because its window slides (counts fall as buckets leave); an empty list is
published once, then it goes quiet.

Readers (the HTTP API, the hosts' live pages, ``socialrec api``) serve the lists as last
published, never recounting buckets per request: once Kafka has a tick's lists, each is kept
in Redis (``Store.keep_published``, one key per scope) with up to :data:`KEPT_ITEMS` items,
so the API's ``k`` can reach past the topic's ``SOCIALREC_TRENDING_TOP_K``.
:func:`last_published` reads them back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.trending import GLOBAL_SCOPE, TrendingItem, TrendingList
from streams.config import Settings
from streams.http.api_spec import MAX_TRENDING_K
from streams.metrics import WorkerMetrics
from streams.pipeline import Publisher
from streams.runtime.outage import dependency_of, is_outage
from streams.store import Store

log = logging.getLogger(__name__)

#: Scopes published per tick at most (the rest wait for the next tick).
MAX_SCOPES_PER_TICK = 500
#: Items kept per published list for readers: as many as the API's ``k`` may ask for.
KEPT_ITEMS = MAX_TRENDING_K


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


def trending_from_json(raw: bytes) -> TrendingList:
    """A list back from its wire form (:func:`trending_json` is its inverse, up to the rounding
    it applies; ``freshness_s`` is the reader's to compute again).

    >>> from models.trending import TrendingItem
    >>> r = TrendingList("global", 60.0, 10.0, 9.5, (TrendingItem("i1", 3.0, 0.05, 2),))
    >>> trending_from_json(trending_json(r, 10.0)) == r
    True
    """
    body = orjson.loads(raw)
    return TrendingList(
        body["scope"],
        float(body["window_s"]),
        float(body["as_of"]),
        body["newest_event_at"],
        tuple(
            TrendingItem(i["item_id"], i["count"], i["velocity"], i["events"])
            for i in body["items"]
        ),
    )


def ranking_fallback(result: TrendingList) -> list[tuple[str, float]]:
    """The global list as the ranking's fill-in wants it: (item, weighted count)."""
    return [(i.item_id, i.count) for i in result.items]


async def last_published(
    store: Store, scopes: Sequence[str], now: float, k: int, window_s: float
) -> list[TrendingList]:
    """Each scope's last published list, its top ``k``; a scope with none kept (nothing
    counted in its window lately) is the empty list a publish would give at ``now``."""
    lists = []
    for scope, raw in zip(scopes, await store.published(scopes), strict=True):
        if raw is None:
            lists.append(TrendingList(scope, window_s, now, None, ()))
        else:
            found = trending_from_json(raw)
            lists.append(dataclasses.replace(found, items=found.items[:k]))
    return lists


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
    #: such as the hosts' live page, streams/http/live/). Must not block; errors are logged.
    listeners: list[Callable[[TrendingList, float], None]] = field(default_factory=list)
    #: Scopes taken from the store's changed set whose lists have not reached Kafka yet (a
    #: Redis or Kafka outage struck in between): every tick publishes them until one succeeds.
    unpublished: set[str] = field(default_factory=set)
    #: The dependency a tick waits for, while one is out (logged once when it goes and returns).
    down: str | None = None

    async def run_tick(self) -> None:
        """One timer tick: :meth:`tick`, an outage logged once and waited out by later ticks,
        any other error logged in full (the next tick tries again)."""
        try:
            await self.tick()
        except Exception as exc:
            if not is_outage(exc):
                log.exception("trending publish failed")
            elif self.down is None:
                self.down = dependency_of(exc)
                log.warning("trending publish waits for %s (%s)", self.down, type(exc).__name__)
            return
        if self.down is not None:
            log.warning("trending publish resumed: %s is back", self.down)
            self.down = None

    async def tick(self) -> int:
        """Publish every changed scope once; returns how many were published."""
        now = self.clock()
        bucket = math.floor(now / self.settings.trending_bucket_s)
        if bucket != self.slid_at:
            await self.store.mark_changed(sorted(self.active))
            self.slid_at = bucket  # once marked: an outage before then slides it next tick
        self.unpublished.update(await self.store.take_changed_scopes(MAX_SCOPES_PER_TICK))
        scopes = sorted(self.unpublished)
        if not scopes:
            return 0
        kept = await self.store.trending(scopes, now, max(KEPT_ITEMS, self.settings.trending_top_k))
        top_k = self.settings.trending_top_k
        lists = [dataclasses.replace(r, items=r.items[:top_k]) for r in kept]
        if self.on_global is not None:
            for result in lists:
                if result.scope == GLOBAL_SCOPE:
                    self.on_global(ranking_fallback(result))
        topic = self.settings.topic("trending")
        pending: list[Awaitable[Any]] = []
        for result in lists:
            body = trending_json(result, now)
            pending.append(await self.publisher.send(topic, result.scope.encode(), body, []))
        await asyncio.gather(*pending)
        # Published: readers serve these from now on. They expire with the buckets counted.
        ttl_s = 2 * self.settings.trending_window_s
        await self.store.keep_published({r.scope: trending_json(r, now) for r in kept}, ttl_s)
        self.unpublished.clear()
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
