"""The event contract: what a user action looks like on the wire, and how it is validated.

Events are plain JSON objects (any client can produce them), keyed by ``user_id`` in Kafka so
that one user's actions stay ordered in one partition. Validation is a pure function from raw
bytes to either an :class:`Event` or a :class:`Rejection` whose ``reason`` is a short,
fixed label (safe for metric labels: it never contains the payload).

>>> raw = b'{"event_id":"e1","type":"view","user_id":"u1","item_id":"i9","ts":1700000000}'
>>> ev = parse_event(raw, now=1700000001.0)
>>> ev.type, ev.user_id, ev.item_id
(<EventType.VIEW: 'view'>, 'u1', 'i9')
>>> str(parse_event(b'not json', now=0.0).reason)
'not_json'
>>> str(parse_event(b'{"event_id":"e2","type":"teleport","user_id":"u1","ts":1}', now=2.0).reason)
'unknown_type'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import orjson

SCHEMA_VERSION: Final = 1
MAX_ID_LENGTH: Final = 128
#: Control characters (C0, DEL, C1): never in an id. The state joins ids with tabs (a sharer
#: and an item in an inbox entry, a trending log entry's fields), so a tab in an id would let
#: one user's erasure take another's entries; newlines and NUL would also break logs.
#: Also the OpenAPI document's (``not`` this pattern): the same in Python and JSON Schema.
CONTROL_PATTERN: Final = r"[\x00-\x1f\x7f-\x9f]"
_CONTROL: Final = re.compile(CONTROL_PATTERN)
#: The id rule in words, for every refusal of an id (topics and HTTP routes alike).
ID_RULE: Final = f"1 to {MAX_ID_LENGTH} characters, none of them a control character"


class EventType(StrEnum):
    """Every user action the recommender understands."""

    VIEW = "view"
    LIKE = "like"
    SHARE = "share"  # item shared with target_user_id
    CART = "cart"
    PURCHASE = "purchase"
    HIDE = "hide"  # negative feedback: "not interested"; also filters the item
    FOLLOW = "follow"  # user follows target_user_id
    UNFOLLOW = "unfollow"


#: Each type by its wire name (a dict lookup: the enum's own lookup was a visible share of
#: validating an event).
_TYPES: Final[dict[str, EventType]] = {t.value: t for t in EventType}

#: Default per-type weights; configuration overrides them (negative weights allowed).
DEFAULT_WEIGHTS: Final[dict[EventType, float]] = {
    EventType.VIEW: 1.0,
    EventType.LIKE: 3.0,
    EventType.SHARE: 4.0,
    EventType.CART: 5.0,
    EventType.PURCHASE: 8.0,
    EventType.HIDE: -10.0,
    EventType.FOLLOW: 0.0,
    EventType.UNFOLLOW: 0.0,
}

ITEM_TYPES: Final = frozenset(
    {
        EventType.VIEW,
        EventType.LIKE,
        EventType.SHARE,
        EventType.CART,
        EventType.PURCHASE,
        EventType.HIDE,
    }
)
TARGET_USER_TYPES: Final = frozenset({EventType.SHARE, EventType.FOLLOW, EventType.UNFOLLOW})


class RejectReason(StrEnum):
    """Why an event went to the dead-letter topic. Values are metric-label safe."""

    OVERSIZED = "oversized"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    UNSUPPORTED_SCHEMA = "unsupported_schema"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"
    BAD_TIMESTAMP = "bad_timestamp"
    KEY_MISMATCH = "key_mismatch"  # the Kafka key is not the user_id (streams checks it)


@dataclass(frozen=True, slots=True)
class Event:
    """One validated user action. Ids are strings; ``ts`` is Unix seconds (event time)."""

    event_id: str
    type: EventType
    user_id: str
    ts: float
    item_id: str | None = None
    target_user_id: str | None = None
    stream_id: str | None = None

    def to_json(self) -> bytes:
        """The wire form (the inverse of :func:`parse_event`)."""
        body: dict[str, object] = {
            "event_id": self.event_id,
            "type": self.type.value,
            "user_id": self.user_id,
            "ts": self.ts,
            "schema_version": SCHEMA_VERSION,
        }
        for name in ("item_id", "target_user_id", "stream_id"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return orjson.dumps(body)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that failed validation: a metric-safe reason and a human-readable detail.

    The detail names fields, never values, so it can go into DLQ headers and logs.
    """

    reason: RejectReason
    detail: str


def is_valid_id(text: str) -> bool:
    """The id rule every input shares: 1 to :data:`MAX_ID_LENGTH` characters, none of them a
    control character (any other Unicode is fine: right-to-left marks, emoji, CJK).

    >>> is_valid_id("u42"), is_valid_id("\\u200f🛍"), is_valid_id("a\\tb"), is_valid_id("x" * 129)
    (True, True, False, False)
    """
    return 0 < len(text) <= MAX_ID_LENGTH and _CONTROL.search(text) is None


def id_field(body: Mapping[str, object], name: str, required: bool) -> str | Rejection | None:
    """An id field by the one rule every input topic shares (:func:`is_valid_id`): a string
    or an integer (turned into text)."""
    value = body.get(name)
    if value is None:
        if required:
            return Rejection(RejectReason.MISSING_FIELD, f"missing field '{name}'")
        return None
    # Integers are accepted as ids (many catalogues use numeric ids) and normalised to text.
    if isinstance(value, bool) or not isinstance(value, str | int):
        return Rejection(RejectReason.BAD_FIELD, f"field '{name}' must be a string")
    text = str(value)
    if not is_valid_id(text):
        return Rejection(
            RejectReason.BAD_FIELD,
            f"field '{name}' must be {ID_RULE}",
        )
    return text


def parse_event(
    raw: bytes,
    *,
    now: float,
    max_bytes: int = 8192,
    max_future_skew_s: float = 3600.0,
    min_ts: float = 946_684_800.0,
) -> Event | Rejection:
    """Validate raw bytes from the wire into an :class:`Event`, or say why not.

    ``now`` is passed in (not read from a clock) so validation stays pure and testable.
    A timestamp earlier than ``min_ts`` or later than ``now + max_future_skew_s`` is absurd
    (typically milliseconds sent as seconds, or a zeroed clock). One function on purpose: the
    checks in the order a record is read, each returning at the first fault, on every event.
    """
    if len(raw) > max_bytes:
        return Rejection(RejectReason.OVERSIZED, f"{len(raw)} bytes > limit {max_bytes}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Rejection(RejectReason.NOT_JSON, "payload is not valid UTF-8 JSON")
    if not isinstance(body, dict):
        return Rejection(RejectReason.NOT_OBJECT, "payload must be a JSON object")

    version = body.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return Rejection(
            RejectReason.UNSUPPORTED_SCHEMA, f"schema_version must be {SCHEMA_VERSION}"
        )

    raw_type = body.get("type")
    if raw_type is None:
        return Rejection(RejectReason.MISSING_FIELD, "missing field 'type'")
    event_type = _TYPES.get(raw_type) if isinstance(raw_type, str) else None
    if event_type is None:
        return Rejection(RejectReason.UNKNOWN_TYPE, f"type must be one of {sorted(EventType)}")

    ids: dict[str, str | None] = {}
    for name, required in (
        ("event_id", True),
        ("user_id", True),
        ("item_id", event_type in ITEM_TYPES),
        ("target_user_id", event_type in TARGET_USER_TYPES),
        ("stream_id", False),
    ):
        checked = id_field(body, name, required)
        if isinstance(checked, Rejection):
            return checked
        ids[name] = checked

    ts = body.get("ts")
    if ts is None:
        return Rejection(RejectReason.MISSING_FIELD, "missing field 'ts'")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return Rejection(RejectReason.BAD_FIELD, "field 'ts' must be a number (Unix seconds)")
    if ts < min_ts or ts > now + max_future_skew_s:
        return Rejection(
            RejectReason.BAD_TIMESTAMP,
            "field 'ts' is outside the accepted range (Unix seconds, not milliseconds)",
        )
    if (
        event_type in (EventType.FOLLOW, EventType.UNFOLLOW)
        and ids["target_user_id"] == ids["user_id"]
    ):
        return Rejection(RejectReason.BAD_FIELD, "a user cannot follow themselves")

    return Event(
        event_id=ids["event_id"] or "",
        type=event_type,
        user_id=ids["user_id"] or "",
        ts=float(ts),
        # A follow is about a person: an item sent with it is checked and then left out, or
        # it would read as an item event to whatever keys on item_id (the reference store).
        item_id=ids["item_id"] if event_type in ITEM_TYPES else None,
        # Likewise a person sent with an item event: kept, it would tie the event to them (an
        # erasure of that person would drop the event).
        target_user_id=ids["target_user_id"] if event_type in TARGET_USER_TYPES else None,
        stream_id=ids["stream_id"],
    )
