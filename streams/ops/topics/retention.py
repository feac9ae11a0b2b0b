"""How long a topic keeps a record, and so how long a user's erasure mark must last."""

from __future__ import annotations

from streams.ops.topics.spec import TopicSpec

#: Topics whose records carry a user's events: an erased user must not come back from them.
TOPICS_WITH_USER_EVENTS = ("events", "events.dlq", "shares")
#: Kafka's segment.ms when a topic sets none (log.roll.hours: a week).
KAFKA_SEGMENT_MS = 604_800_000
#: Beyond the longest time a record can outlive its topic's retention, for records appended
#: just before it ran out and the broker's retention check (every 5 minutes by default).
ERASURE_MARK_MARGIN_S = 86_400


def kept_for_ms(spec: TopicSpec) -> int:
    """The longest a record of the topic can be read after it was appended, or -1 (forever).

    Kafka deletes whole segments, once the newest record of one is older than retention.ms; a
    segment takes appends for up to segment.ms, so its first record lasts up to both.

    >>> kept_for_ms(TopicSpec("shares", 1, 1, "user_id", "delete", 86_400_000))
    691200000
    >>> kept_for_ms(TopicSpec("shares", 1, 1, "k", "delete", 86_400_000, {"segment.ms": "3600000"}))
    90000000
    """
    if spec.retention_ms < 0:
        return -1
    return spec.retention_ms + int(spec.config.get("segment.ms", KAFKA_SEGMENT_MS))


def erasure_mark_ttl_s(specs: list[TopicSpec]) -> int:
    """How long an erasure mark must last: as long as any topic may still hold the user's
    events (a replay from the beginning, a lag of days, lost offsets, a DLQ replay: its
    retention plus its segment time, ``kept_for_ms``), plus a day. Infinite retention means
    marks that never expire (0).

    >>> day = {"segment.ms": "86400000"}
    >>> spec = lambda name, ms: TopicSpec(name, 1, 1, "user_id", "delete", ms, day)
    >>> erasure_mark_ttl_s([spec("events", 604_800_000), spec("events.dlq", 1_209_600_000)])
    1382400
    """
    kept = [kept_for_ms(s) for s in specs if s.name in TOPICS_WITH_USER_EVENTS]
    if any(ms < 0 for ms in kept):
        return 0
    return max(kept, default=0) // 1000 + ERASURE_MARK_MARGIN_S
