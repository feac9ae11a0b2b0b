"""The event contract: every malformed input is rejected with a stable, payload-free reason."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.events import Event, EventType, Rejection, RejectReason, parse_event
from tests.unit.strategies import event_streams

NOW = 1_800_000_000.0


def _raw(**fields: object) -> bytes:
    body: dict[str, object] = {
        "event_id": "e1",
        "type": "view",
        "user_id": "u1",
        "item_id": "i1",
        "ts": NOW - 10,
        "schema_version": 1,
    }
    body.update(fields)
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


def test_valid_view_parses() -> None:
    event = parse_event(_raw(), now=NOW)
    assert event == Event("e1", EventType.VIEW, "u1", NOW - 10, item_id="i1")


def test_numeric_ids_are_normalised_to_text() -> None:
    event = parse_event(_raw(user_id=42, item_id=7), now=NOW)
    assert isinstance(event, Event)
    assert (event.user_id, event.item_id) == ("42", "7")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not utf8", RejectReason.NOT_JSON),
        (b"{broken", RejectReason.NOT_JSON),
        (b"[1, 2]", RejectReason.NOT_OBJECT),
        (_raw(type="teleport"), RejectReason.UNKNOWN_TYPE),
        (_raw(type=3), RejectReason.UNKNOWN_TYPE),
        (_raw(type=...), RejectReason.MISSING_FIELD),
        (_raw(event_id=...), RejectReason.MISSING_FIELD),
        (_raw(user_id=...), RejectReason.MISSING_FIELD),
        (_raw(item_id=...), RejectReason.MISSING_FIELD),
        (_raw(ts=...), RejectReason.MISSING_FIELD),
        (_raw(type="share"), RejectReason.MISSING_FIELD),  # share needs a target user
        (_raw(type="follow", item_id=...), RejectReason.MISSING_FIELD),
        (_raw(user_id=["u1"]), RejectReason.BAD_FIELD),
        (_raw(user_id=True), RejectReason.BAD_FIELD),
        (_raw(item_id=""), RejectReason.BAD_FIELD),
        (_raw(item_id="x" * 129), RejectReason.BAD_FIELD),
        (_raw(ts="yesterday"), RejectReason.BAD_FIELD),
        (_raw(type="follow", target_user_id="u1"), RejectReason.BAD_FIELD),
        (_raw(ts=(NOW - 10) * 1000), RejectReason.BAD_TIMESTAMP),  # milliseconds
        (_raw(ts=0), RejectReason.BAD_TIMESTAMP),
        (_raw(ts=NOW + 7200), RejectReason.BAD_TIMESTAMP),
        (_raw(schema_version=2), RejectReason.UNSUPPORTED_SCHEMA),
        (_raw(tags="x" * 9000), RejectReason.OVERSIZED),
    ],
)
def test_bad_input_is_rejected_with_its_reason(raw: bytes, reason: RejectReason) -> None:
    result = parse_event(raw, now=NOW)
    assert isinstance(result, Rejection)
    assert result.reason is reason


def test_rejection_detail_never_contains_the_payload() -> None:
    secret = "user-secret-123"
    for raw in (_raw(user_id=[secret]), _raw(type=secret), _raw(ts=secret)):
        result = parse_event(raw, now=NOW)
        assert isinstance(result, Rejection)
        assert secret not in result.detail


@given(event_streams(max_size=20))
def test_wire_form_round_trips(events: list[Event]) -> None:
    for event in events:
        assert parse_event(event.to_json(), now=NOW) == event


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(parse_event(raw, now=NOW), Event | Rejection)


@pytest.mark.parametrize("bad", ["a\tb", "a\nb", "\x00", "u\x1f1", "\x7f", "u\x85"])
def test_ids_with_control_characters_are_refused(bad: str) -> None:
    """The state joins ids with tabs: with "a\\tb" accepted, erasing user "a" would also take
    the inbox entries user "a\\tb" left (they start with "a\\t")."""
    for field in ("event_id", "user_id", "item_id", "stream_id"):
        rejected = parse_event(_raw(**{field: bad}), now=NOW)
        assert isinstance(rejected, Rejection), field
        assert rejected.reason is RejectReason.BAD_FIELD


def test_any_other_unicode_is_an_id() -> None:
    for good in ("\u200fمستخدم", "🛍️👩🏽‍💻", "用户", "x" * 128, " padded ", "\u2028"):
        event = parse_event(_raw(user_id=good), now=NOW)
        assert isinstance(event, Event)
        assert event.user_id == good


def test_an_item_sent_with_a_follow_is_left_out() -> None:
    """A follow carrying an item_id once made the in-memory store read its user for a list
    the pipeline had no trigger for (a KeyError that failed the whole batch)."""
    for kind in ("follow", "unfollow"):
        event = parse_event(_raw(type=kind, target_user_id="u2"), now=NOW)
        assert isinstance(event, Event)
        assert event.item_id is None
