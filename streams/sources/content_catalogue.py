"""The catalogue as the content source sees it, shared through Redis and followed locally.

Where it lives (key names from :mod:`streams.keys`):

- ``content_items`` (hash item -> JSON catalogue record, in the ``{content}`` slot with the
  change stream: they are written in one script, streams/lua/catalogue.lua). Each worker
  keeps a local :class:`models.content.ContentModel` of *all* items, rebuilt from the
  records (feature hashing is stable, so every worker computes identical vectors), because
  scoring a profile against every item is one vectorised product, not a Redis call per item.
- ``content_changes`` (stream of item ids, approximately trimmed): every put or delete adds
  the ids; :meth:`ContentCatalogue.sync` follows it into the local model
  (:class:`streams.sources.catalog_follower.CatalogFollower`, which search uses too).
- ``i:{item}:content_sim`` (zset, top ``neighbours`` by cosine, in the slot of the item's
  home): written when the record arrives, and the new item is added into the lists of its
  nearest items at the same time, so it is reachable as a neighbour immediately.

A put or delete edits the neighbour lists first, a step per home (each one slot,
streams/sources/handoff.py), then stores the records and announces them: a crash between the
two leaves lists naming an item whose record is not stored yet (:meth:`ContentCatalogue.similar`
leaves out what the catalogue does not hold) or, for a delete, a record with its lists gone
until the delete is done again. Every edit sets values, so doing it again changes nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from models.content import CatalogRecord, ContentModel
from streams.keys import Keys, decoded
from streams.sources.catalog_follower import CatalogFollower
from streams.sources.content_records import ContentParams, record_mapping
from streams.sources.handoff import Handoffs
from streams.sources.writes import Step, Writes
from streams.store.lua import Arg

log = logging.getLogger(__name__)


class ContentCatalogue:
    """The items' records, content vectors and ``content_sim`` lists: written through Redis,
    followed into the local model (shared with the source's profiles)."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        params: ContentParams,
        model: ContentModel,
        clock: Callable[[], float],
    ) -> None:
        self.client = client
        self.keys = keys
        self.params = params
        self.model = model
        self.follower = CatalogFollower(
            client,
            keys,
            apply=self._apply,
            known=model.item_ids,
            interval_s=params.sync_interval_s,
            clock=clock,
            read_count=4 * params.stream_maxlen,
            scan_count=params.scan_count,
            name="content",
        )
        self._items_key = self.follower.items_key
        self._stream_key = self.follower.stream_key
        self._lists = Handoffs(client, keys, "content")

    async def put_items(self, records: Sequence[CatalogRecord]) -> None:
        """Store records, announce them, and give each its content neighbours right away.

        Round trips: a sync (one when nothing changed), one read of the items' current
        neighbour lists, one writing the lists, and one the records and announcements.
        """
        latest = {r.item_id: r for r in records}
        if not latest:
            return
        await self.sync()
        ids = list(latest)
        k = self.params.neighbours
        # Lists the items were in before (a changed record may no longer belong there).
        stale = await self._linked(ids)
        for record in latest.values():
            self.model.add_item(record_mapping(record))
        own: dict[str, list[tuple[str, float]]] = {}
        back: dict[str, list[tuple[float, str]]] = {}
        for item in ids:
            own[item] = self.model.similar_items(item, k)
            for other, score in own[item]:
                back.setdefault(other, []).append((score, item))
        # Only the best k back-links of a list can survive its trim: send no more.
        for links in back.values():
            links.sort(key=lambda si: (-si[0], si[1]))
            del links[k:]
        await self._write(
            ids,
            stale,
            own,
            back,
            records={i: orjson.dumps(record_mapping(r)) for i, r in latest.items()},
        )

    async def delete_items(self, item_ids: Sequence[str]) -> None:
        """Forget delisted items: vector, own neighbours, and their place in others' lists."""
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return
        await self.sync()
        linked = await self._linked(ids)
        for item in ids:
            self.model.remove_item(item)
        await self._write(ids, linked, {item: [] for item in ids}, {}, records={})

    async def _write(
        self,
        ids: Sequence[str],
        unlink: Mapping[str, Iterable[str]],
        own: Mapping[str, Sequence[tuple[str, float]]],
        back: Mapping[str, Sequence[tuple[float, str]]],
        records: Mapping[str, bytes],
    ) -> None:
        """The neighbour lists, a step per home (one round trip, so 40k list edits are a
        command per home); then the records and their announcement, one step
        (:meth:`CatalogFollower.write`)."""
        sim = functools.partial(self.keys.item, field="content_sim")
        per: dict[str, Writes] = {}

        def add(item: str, *op: Arg) -> None:
            key = sim(item)
            stem = self.keys.stem_of(key)
            per.setdefault(stem, Writes(self.keys, stem)).add(op[0], key, *op[1:])

        for item, others in unlink.items():
            for other in others:
                add(other, "ZREM", item)
        for item, neighbours in own.items():
            add(item, "DEL")
            if neighbours:
                add(item, "ZADD", *[v for m, s in neighbours for v in (s, m)])
        for other, links in back.items():
            add(other, "ZADD", *[v for s, m in links for v in (s, m)])
            add(other, "ZREMRANGEBYRANK", 0, -(self.params.neighbours + 1))
        if per:
            await self._lists.run([Step(writes) for writes in per.values()])
        removed = [i for i in ids if i not in records]
        await self.follower.write(records, removed, self.params.stream_maxlen)

    async def similar(self, item_id: str, k: int) -> list[tuple[str, float]]:
        """The item's content neighbours, best first, never a deleted item."""
        if k <= 0:
            return []
        rows: list[Any] = await self.client.zrevrange(
            self.keys.item(item_id, "content_sim"), 0, 2 * k - 1, withscores=True
        )
        found = [(decoded(m), float(s)) for m, s in rows]
        unknown = [m for m, _ in found if m not in self.model]
        if unknown:  # deleted, or added by another worker since our last sync: ask Redis
            present = await self.client.hmget(self._items_key, unknown)
            gone = {m for m, v in zip(unknown, present, strict=True) if v is None}
            found = [(m, s) for m, s in found if m not in gone]
        return found[:k]

    async def _linked(self, ids: Sequence[str]) -> dict[str, set[str]]:
        """Items whose ``content_sim`` may list each of ``ids``: its own list (cosine is
        symmetric, so mostly they list it back) and its wider local neighbourhood."""
        pipe = self.client.pipeline(transaction=False)
        for item in ids:
            pipe.zrange(self.keys.item(item, "content_sim"), 0, -1)
        stored = await pipe.execute()
        linked: dict[str, set[str]] = {}
        for item, members in zip(ids, stored, strict=True):
            others = {decoded(m) for m in members}
            if item in self.model:
                wide = self.model.similar_items(item, 4 * self.params.neighbours)
                others.update(o for o, _ in wide)
            others.discard(item)
            linked[item] = others
        return linked

    # ---- following the catalogue -------------------------------------------------------------
    async def sync(self) -> int:
        """Bring the local catalogue up to date; returns how many items changed locally (the
        first call loads everything)."""
        return await self.follower.sync()

    async def sync_if_due(self) -> None:
        await self.follower.sync_if_due()

    def _apply(self, changes: Mapping[str, bytes | None]) -> int:
        """Add, replace or remove items (``None``: gone), with no ``await`` in between."""
        bad = 0
        for item, value in changes.items():
            if value is None:
                self.model.remove_item(item)
                continue
            try:
                self.model.add_item(orjson.loads(value))
            except (ValueError, TypeError, AttributeError):
                bad += 1
        if bad:
            log.warning("skipped %d malformed content records", bad)
        return len(changes) - bad
