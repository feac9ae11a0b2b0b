"""The content source's stored formats and parameters.

A user's profile is one Redis string (the model's profile blob, then the user's recent content
items as JSON); a catalogue record is stored as the JSON of :func:`record_mapping`; each
change-stream entry carries item ids as a JSON list (:func:`entry_items`, which search reads
too).

>>> raw = pack_profile(b"blob", [("p1", 1_700_000_000.0, 3.0)])
>>> unpack_profile(raw)
(b'blob', [('p1', 1700000000.0, 3.0)])
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from models.content import CatalogRecord
from models.events import DEFAULT_WEIGHTS, EventType

#: (item id, event time, weight) of one of the user's recent content items.
RecentItem = tuple[str, float, float]

_MAGIC: Final = b"SRC1"
_ENVELOPE: Final = struct.Struct("<4sI")  # magic, length of the models.content profile blob


def pack_profile(profile: bytes, recent: Sequence[RecentItem]) -> bytes:
    """One Redis string: the model's profile blob, then the recent items as JSON."""
    return _ENVELOPE.pack(_MAGIC, len(profile)) + profile + orjson.dumps(list(recent))


def unpack_profile(raw: bytes) -> tuple[bytes, list[RecentItem]]:
    """Inverse of :func:`pack_profile`; ``ValueError`` for anything else.

    >>> unpack_profile(b"nonsense")
    Traceback (most recent call last):
    ...
    ValueError: not a content profile record
    """
    if len(raw) < _ENVELOPE.size or raw[:4] != _MAGIC:
        raise ValueError("not a content profile record")
    _, size = _ENVELOPE.unpack_from(raw)
    start = _ENVELOPE.size
    if len(raw) < start + size:
        raise ValueError("content profile record is truncated")
    try:
        entries = orjson.loads(raw[start + size :])
        recent = [(str(i), float(ts), float(w)) for i, ts, w in entries]
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError("content profile record has bad recent items") from exc
    return raw[start : start + size], recent


def record_mapping(record: CatalogRecord) -> dict[str, object]:
    """The record as the mapping :meth:`ContentModel.add_item` takes (and as stored JSON)."""
    return {
        "item_id": record.item_id,
        "title": record.title,
        "category": record.category,
        "brand": record.brand,
        "merchant_id": record.merchant_id,
        "price": record.price,
        "tags": list(record.tags),
    }


def blob(value: bytes | str | None) -> bytes | None:
    """A stored value as bytes, whether or not the client decodes responses."""
    return value.encode() if isinstance(value, str) else value


def entry_items(fields: Mapping[Any, Any]) -> list[str]:
    """The item ids of a change-stream entry (bytes or decoded responses alike)."""
    value = fields.get(b"items", fields.get("items"))
    try:
        items = orjson.loads(value) if value is not None else []
    except orjson.JSONDecodeError:
        return []
    return [str(i) for i in items] if isinstance(items, list) else []


@dataclass(frozen=True, slots=True)
class ContentParams:
    """``neighbours``: size of each ``content_sim`` list. ``recent_items``: items kept with a
    profile to explain candidates. ``sync_interval_s``: how stale the local catalogue may get
    before reads follow the change stream again. ``profile_ttl_s``: a profile nobody updates
    expires (a week's half-life leaves under 1 % of a purchase after ~13 weeks)."""

    neighbours: int = 20
    recent_items: int = 8
    sync_interval_s: float = 1.0
    stream_maxlen: int = 100_000
    scan_count: int = 1_000
    profile_ttl_s: int = 90 * 86_400
    weights: Mapping[EventType, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
