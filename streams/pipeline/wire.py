"""The pipeline's records on the wire: the event contract a consumed record must meet, the
headers of a dead letter, and the JSON of one user's list (schema in topics.yaml)."""

from __future__ import annotations

import time

import orjson

from models.events import Event, Rejection, RejectReason, parse_event
from models.recommend import Reason, Recommendations
from streams.config import Settings
from streams.pipeline.records import InboundRecord


def validate_record(settings: Settings, record: InboundRecord, now: float) -> Event | Rejection:
    """The event contract (models/events.py) with the configured limits, and the Kafka key:
    it must be the ``user_id``, or the user's events would not all reach the one worker that
    owns the user."""
    if record.value is None:
        return Rejection(RejectReason.NOT_JSON, "record has no value (tombstone)")
    checked = parse_event(
        record.value,
        now=now,
        max_bytes=settings.max_event_bytes,
        max_future_skew_s=settings.max_future_skew_s,
        min_ts=settings.min_event_ts,
    )
    if isinstance(checked, Event) and record.key != checked.user_id.encode():
        return Rejection(RejectReason.KEY_MISMATCH, "the record's key is not its user_id")
    return checked


def dead_letter_headers(record: InboundRecord, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """Kafka Connect's ``errors.deadletterqueue`` header convention, plus a metric-safe reason.

    The detail names fields, never values, so nothing of the payload leaks into headers.
    """
    return [
        ("__connect.errors.topic", record.topic.encode()),
        ("__connect.errors.partition", str(record.partition).encode()),
        ("__connect.errors.offset", str(record.offset).encode()),
        ("__connect.errors.exception.class.name", reason.encode()),
        ("__connect.errors.exception.message", detail.encode()),
        ("socialrec.dlq.reason", reason.encode()),
        ("socialrec.dlq.timestamp", repr(record.timestamp).encode()),
    ]


def _reason_json(reason: Reason) -> dict[str, object]:
    """Only the fields that apply: an item of the user's, a person and their action, or what
    kind of match it is (``taste_match``, ``profile_match``, ``similar_shoppers``)."""
    body: dict[str, object] = {}
    if reason.item_id is not None:
        body["item_id"] = reason.item_id
    if reason.user_id is not None:
        body["user_id"] = reason.user_id
    if reason.action is not None:
        body["action"] = reason.action
    body["contribution"] = round(reason.contribution, 6)
    return body


def recommendations_json(
    recs: Recommendations, trigger: InboundRecord, trigger_event_id: str, model_version: str
) -> bytes:
    """The wire form of one user's recommendations (schema in topics.yaml)."""
    return orjson.dumps(
        {
            "user_id": recs.user_id,
            "items": [
                {
                    "item_id": item.item_id,
                    "score": round(item.score, 6),
                    "source": item.source.value,
                    "reasons": [_reason_json(r) for r in item.reasons],
                    "sources": {s.value: round(v, 6) for s, v in item.sources},
                }
                for item in recs.items
            ],
            "cold_start": recs.cold_start,
            "trigger": {
                "event_id": trigger_event_id,
                "topic": trigger.topic,
                "partition": trigger.partition,
                "offset": trigger.offset,
            },
            "generated_at": time.time(),
            "model_version": model_version,
        }
    )
