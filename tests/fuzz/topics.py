"""Hostile records for the input topics: ``events``, ``catalog`` and ``privacy.requests``.

Each starts from a valid record of its topic and goes through :class:`RecordFuzzer`'s
mutations; a missing or mismatched Kafka key is one of them.
"""

from __future__ import annotations

from typing import Final

from models.events import ITEM_TYPES, TARGET_USER_TYPES, EventType, is_valid_id
from streams.runtime.catalog import MAX_CATALOG_BYTES
from streams.runtime.privacy import MAX_REQUEST_BYTES
from tests.fuzz.ids import free_text, good_id, json_text
from tests.fuzz.records import BAD, VALID, Case, Fields, RecordFuzzer, Spot, last

FOLLOWS: Final = frozenset({EventType.FOLLOW, EventType.UNFOLLOW})


class Fuzzer(RecordFuzzer):
    """Seeded hostile records for ``events``, ``catalog`` and ``privacy.requests``."""

    def event(self, max_bytes: int) -> Case:
        kind = self.rng.choice(list(EventType))
        user = good_id(self.rng)
        fields: Fields = [("event_id", json_text(good_id(self.rng))), ("type", json_text(kind))]
        fields += [("user_id", json_text(user)), ("ts", repr(self.now - self.rng.uniform(0, 1e6)))]
        if kind in ITEM_TYPES:
            fields.append(("item_id", json_text(good_id(self.rng))))
        if kind in TARGET_USER_TYPES:  # not the user
            fields.append(("target_user_id", json_text(good_id(self.rng)[1:] + "→")))
        if self.rng.random() < 0.3:
            fields.append(("stream_id", json_text(good_id(self.rng))))
        if self.rng.random() < 0.5:
            fields.append(("schema_version", "1"))
        case = self.case(fields, self._event_spots(kind), _user_key, max_bytes)
        user_id, target = _as_id(last(fields, "user_id")), _as_id(last(fields, "target_user_id"))
        if case.value is not None and not case.reasons and kind in FOLLOWS and user_id == target:
            case.reasons = BAD  # a follow of oneself (both ids drawn alike, say the same integer)
        return case

    def _event_spots(self, kind: EventType) -> list[Spot]:
        missing = frozenset({"missing_field"})
        unsupported = frozenset({"unsupported_schema"})
        unknown = frozenset({"unknown_type"})
        stamp = frozenset({"bad_timestamp"})
        return [
            Spot("event_id", self.id_value, missing),
            Spot("user_id", self.id_value, missing),
            Spot("item_id", self.id_value, missing if kind in ITEM_TYPES else VALID),
            Spot("target_user_id", self.id_value, missing if kind in TARGET_USER_TYPES else VALID),
            Spot("stream_id", self.id_value),
            Spot(
                "type",
                lambda: self.pick(('"teleport"', unknown), ('"VIEW"', unknown), ("1", unknown)),
                missing,
            ),
            Spot(
                "ts",
                lambda: self.pick(
                    (str(int(self.now)), VALID),
                    ('"1700000000"', BAD),
                    ("true", BAD),
                    ("[]", BAD),
                    (repr(self.now * 1000), stamp),  # milliseconds
                    ("0", stamp),
                    ("-1e300", stamp),
                    (repr(self.now + 7200), stamp),
                ),
                missing,
            ),
            Spot(
                "schema_version",
                lambda: self.pick(("1.0", VALID), ("2", unsupported), ('"1"', unsupported)),
                null=unsupported,
            ),
        ]

    def catalog(self) -> Case:
        item = good_id(self.rng)
        fields: Fields = [("item_id", json_text(item)), ("title", json_text(free_text(self.rng)))]
        for name in ("category", "merchant_id", "brand"):
            if self.rng.random() < 0.7:
                fields.append((name, json_text(good_id(self.rng))))
        fields += [("price", repr(self.rng.uniform(0, 1e4))), ("tags", json_text(["a", "新"]))]
        spots = [
            Spot("item_id", self.id_value, frozenset({"missing_field"})),
            Spot("category", self.optional_id),
            Spot("merchant_id", self.optional_id),
            Spot("title", lambda: self.pick((json_text(free_text(self.rng)), VALID), ("7", VALID))),
            Spot("price", lambda: self.pick(("0", VALID), ("-1", BAD), ('"12"', BAD))),
            Spot("tags", lambda: self.pick(("{}", VALID), ('"a"', BAD), ('["a\\tb"]', BAD))),
        ]
        case = self.case(fields, spots, _item_key, MAX_CATALOG_BYTES)
        if case.value is None:  # a tombstone deletes the item its key names
            text = (case.key or b"").decode(errors="replace")
            valid = text.encode() == case.key and is_valid_id(text)
            case.reasons = VALID if valid else frozenset({"missing_field", "bad_field"})
        return case

    def privacy(self) -> Case:
        fields: Fields = [("request_id", json_text(good_id(self.rng))), ("type", '"erase"')]
        fields.append(("user_id", json_text(good_id(self.rng))))
        missing, unknown = frozenset({"missing_field"}), frozenset({"unknown_type"})
        spots = [
            Spot("request_id", self.id_value, missing),
            Spot("user_id", self.id_value, missing),
            Spot("type", lambda: self.pick(('"export"', unknown), ("1", unknown)), unknown),
        ]
        case = self.case(fields, spots, _user_key, MAX_REQUEST_BYTES)
        if case.reasons == {"key_mismatch"}:
            case.reasons = VALID  # honoured whatever its key: see streams/runtime/privacy.py
        return case


def _as_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


def _key(fields: Fields, name: str) -> bytes | None:
    value = _as_id(last(fields, name))
    return None if value is None else value.encode()


def _user_key(fields: Fields) -> bytes | None:
    return _key(fields, "user_id")


def _item_key(fields: Fields) -> bytes | None:
    return _key(fields, "item_id")
