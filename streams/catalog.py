"""Catalog ingestion: the compacted ``catalog`` topic (key = item id) into the store.

A record is the item's JSON (``{item_id, title, category, brand, merchant_id, price, tags}``);
a null value (tombstone) deletes the item. Invalid records go to the dead-letter topic with
the reason; the rest of the batch is stored in one pipelined round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from models.content import CatalogRecord, parse_record
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import InboundRecord, Publisher, dead_letter_headers
from streams.store import Store


def parse_catalog(record: InboundRecord) -> CatalogRecord | str | tuple[str, str]:
    """A record to store, an item id to delete (tombstone), or (reason, detail) to dead-letter.

    >>> r = InboundRecord(b'{"item_id": "i1", "category": "phones"}', b"i1", "catalog", 0, 0, 0.0)
    >>> parse_catalog(r).category
    'phones'
    >>> parse_catalog(InboundRecord(None, b"i1", "catalog", 0, 1, 0.0))
    'i1'
    """
    if record.value is None:
        if not record.key:
            return ("missing_field", "tombstone without a key")
        return record.key.decode(errors="replace")
    try:
        body = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return ("not_json", "payload is not valid UTF-8 JSON")
    if not isinstance(body, dict):
        return ("not_object", "payload must be a JSON object")
    try:
        return parse_record(body)
    except ValueError as exc:
        return ("bad_field", str(exc))


class CatalogSink(Protocol):
    """Anything else built from the catalog (the content source's item vectors)."""

    async def put_items(self, records: Sequence[CatalogRecord]) -> None: ...

    async def delete_items(self, item_ids: Sequence[str]) -> None: ...


@dataclass
class CatalogIngester:
    settings: Settings
    store: Store
    publisher: Publisher
    metrics: WorkerMetrics
    content: CatalogSink | None = None

    async def process(self, records: Sequence[InboundRecord]) -> int:
        items: dict[str, CatalogRecord] = {}
        deletions: list[str] = []
        pending: list[Awaitable[Any]] = []
        for record in records:
            parsed = parse_catalog(record)
            if isinstance(parsed, CatalogRecord):
                items[parsed.item_id] = parsed  # the latest record of an item wins
            elif isinstance(parsed, str):
                deletions.append(parsed)
                items.pop(parsed, None)
            else:
                reason, detail = parsed
                self.metrics.dead_letters.labels(reason).inc()
                pending.append(
                    await self.publisher.send(
                        self.settings.topic("events.dlq"),
                        record.key,
                        record.value,
                        dead_letter_headers(record, reason, detail),
                    )
                )
        await self.store.put_items(list(items.values()))
        await self.store.delete_items(deletions)
        if self.content is not None:
            # After the store: a new item is known to trending before content links it.
            await self.content.put_items(list(items.values()))
            await self.content.delete_items(deletions)
        await asyncio.gather(*pending)
        self.metrics.catalog_items.inc(len(items))
        return len(items)
