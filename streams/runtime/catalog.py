"""Catalog ingestion: the compacted ``catalog`` topic (key = item id) into the store.

A record is the item's JSON (``{item_id, title, category, brand, merchant_id, price, tags}``);
a null value (tombstone) deletes the item. Invalid records go to the dead-letter topic with
the reason; the rest of the batch is stored in one pipelined round trip.

The topic is compacted by key, so the key must be the item id (``key_mismatch`` otherwise): a
record under another key would outlive its item's tombstone. Item, merchant and category ids
follow the events' id rule (they become keys and trending scopes), and tags hold no control
character (the store joins them with tabs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from models.content import CatalogRecord, parse_record
from models.events import RejectReason, is_valid_id
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import InboundRecord, Publisher, dead_letter_headers
from streams.store import Store

#: Larger catalog records are dead-lettered (``oversized``): a title and tags, not a page.
MAX_CATALOG_BYTES: Final = 65_536
#: The catalog fields that are ids: each becomes part of a key or a trending scope.
ID_FIELDS: Final = ("item_id", "merchant_id", "category")


def _check(parsed: CatalogRecord, key: bytes | None) -> tuple[str, str] | None:
    """Why a well-formed record still cannot be stored, if it cannot."""
    for name in ID_FIELDS:
        value = getattr(parsed, name)
        if (value or name == "item_id") and not is_valid_id(value):
            return (RejectReason.BAD_FIELD, f"field '{name}' breaks the id rule")
    if any(not is_valid_id(tag) for tag in parsed.tags if tag):
        return (RejectReason.BAD_FIELD, "field 'tags' must hold ids (no control characters)")
    if key != parsed.item_id.encode():
        return (RejectReason.KEY_MISMATCH, "the record's key is not its item_id")
    return None


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
            return (RejectReason.MISSING_FIELD, "tombstone without a key")
        item_id = record.key.decode(errors="replace")
        if item_id.encode() != record.key or not is_valid_id(item_id):
            return (RejectReason.BAD_FIELD, "tombstone key is not a valid item id")
        return item_id
    if len(record.value) > MAX_CATALOG_BYTES:
        return (RejectReason.OVERSIZED, f"{len(record.value)} bytes > limit {MAX_CATALOG_BYTES}")
    try:
        body = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return (RejectReason.NOT_JSON, "payload is not valid UTF-8 JSON")
    if not isinstance(body, dict):
        return (RejectReason.NOT_OBJECT, "payload must be a JSON object")
    if body.get("item_id") is None:
        return (RejectReason.MISSING_FIELD, "missing field 'item_id'")
    try:
        parsed = parse_record(body)
    except ValueError as exc:
        return (RejectReason.BAD_FIELD, str(exc))
    return _check(parsed, record.key) or parsed


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
