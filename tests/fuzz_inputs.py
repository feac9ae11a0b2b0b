"""Hostile inputs for every input topic and HTTP route: the one home of the fuzz generators.

:class:`Fuzzer` is seeded (a failure names its seed and case number, and reruns exactly) and
fast enough for tens of thousands of cases. Each record it makes starts from a valid one and
gets a few mutations; each mutation says whether it keeps the record valid or which reasons
may reject it, so a test knows what the validator must answer, not only that it did not raise:
random bytes, truncated and deeply nested JSON, huge numbers, NaN and Infinity, duplicate keys,
numbers as strings, wrong types, missing or mismatched Kafka keys, and ids from all of Unicode.

:data:`ids` is the hypothesis strategy of every id the validators accept (any character but a
control character, 1 to 128 of them), for the property tests of the state and erasure.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import orjson
from hypothesis import strategies as st

from models.events import (
    ITEM_TYPES,
    MAX_ID_LENGTH,
    TARGET_USER_TYPES,
    EventType,
    is_valid_id,
)
from streams.catalog import MAX_CATALOG_BYTES
from streams.privacy import MAX_REQUEST_BYTES

#: Every id the validators accept: no control character (Cc), no lone surrogate (Cs: not
#: UTF-8, so never on the wire).
ids: Final = st.text(
    st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=MAX_ID_LENGTH
)
#: Ids that look harmless and are not: each is valid and must work everywhere.
AWKWARD_IDS: Final = (
    "\u200fמשתמש",  # right-to-left mark, Hebrew
    "\u202ereversed",  # right-to-left override
    "🛍️👩🏽‍💻",  # emoji with a variation selector and a zero-width joiner
    "用户",
    "x" * MAX_ID_LENGTH,
    " ",
    "u:history",  # looks like a key's field
    "*",  # a Redis glob
    "\u2028",  # line separator (not a control character)
    "\ufeffbom",
    "0",
    "-1",
    "null",
    "\\t",
)
#: Ids that break the id rule: each must be refused with bad_field.
BAD_IDS: Final = (
    "",
    "x" * (MAX_ID_LENGTH + 1),
    "a\tb",
    "line\nbreak",
    "nul\x00",
    "\x1f",
    "del\x7f",
    "c1\x85",
)
#: JSON texts of values that are never an id (wrong types; 1e30 parses as a float).
NOT_IDS: Final = ("1.5", "true", "false", "[]", '["u1"]', "{}", '{"id": "u1"}', "1e30", "-0.0")
#: A JSON text the decoder refuses, each for another reason.
NOT_JSON: Final = ("NaN", "Infinity", "-Infinity", "1e400", "-1e999", "undefined", "'u1'", "0x10")

Reasons = frozenset[str]
VALID: Final[Reasons] = frozenset()
BAD: Final[Reasons] = frozenset({"bad_field"})
#: A field's JSON text and the reasons it may cause; a function drawing one.
Value = tuple[str, Reasons]
Draw = Callable[[], Value]


@dataclass(frozen=True)
class Spot:
    """A field a mutation may hit: new values, and what its absence (or a null) causes."""

    name: str
    draw: Draw
    absent: Reasons = VALID
    null: Reasons | None = None  # None: a null is the same as an absent field


@dataclass
class Case:
    """One generated record: its bytes and what a validator must answer.

    ``reasons`` is empty for a record that must be accepted, else the reasons that may
    reject it (more than one when mutations compete: the first check that fails wins).
    """

    key: bytes | None
    value: bytes | None
    reasons: Reasons
    what: list[str] = field(default_factory=list)  # the mutations, for failure messages


#: A body under construction: (name, JSON text) pairs, so keys may repeat and numbers may be
#: written as the decoder will never write them.
Fields = list[tuple[str, str]]


def _text(value: object) -> str:
    return orjson.dumps(value).decode()


def render(fields: Fields) -> bytes:
    return ("{" + ",".join(f"{_text(k)}:{v}" for k, v in fields) + "}").encode()


def last(fields: Fields, name: str) -> object:
    """What the decoder will see for ``name`` (the last duplicate wins), or None."""
    found = [v for k, v in fields if k == name]
    return None if not found or found[-1] in NOT_JSON else orjson.loads(found[-1])


def id_pool(seed: int, size: int) -> list[str]:
    """``size`` distinct valid ids, awkward ones included, the same for the same seed."""
    fuzzer, pool = Fuzzer(seed, 0.0), dict.fromkeys(AWKWARD_IDS[: size // 2])
    while len(pool) < size:
        pool.setdefault(fuzzer.good_id())
    return list(pool)


class Fuzzer:
    """Seeded hostile records for ``events``, ``catalog`` and ``privacy.requests``."""

    def __init__(self, seed: int, now: float) -> None:
        self.rng = random.Random(seed)
        self.now = now

    # -- ids ---------------------------------------------------------------------------
    def char(self) -> str:
        """Any Unicode scalar value but a surrogate, the low planes more often."""
        high = self.rng.choice((0x80, 0x3000, 0x11000, 0x10FFFF))
        code = self.rng.randrange(0, high)
        return chr(code) if not 0xD800 <= code <= 0xDFFF else "\ufffd"

    def good_id(self) -> str:
        roll = self.rng.random()
        if roll < 0.15:
            return self.rng.choice(AWKWARD_IDS)
        if roll < 0.3:
            return f"u{self.rng.randrange(10**6)}"
        while True:
            text = "".join(self.char() for _ in range(self.rng.randint(1, 24)))
            if is_valid_id(text):
                return text

    def bad_id_text(self) -> str:
        """The JSON text of a value the id rule refuses (bad_field)."""
        roll = self.rng.random()
        if roll < 0.5:
            return _text(self.rng.choice(BAD_IDS))
        if roll < 0.7:
            mixed = list(self.good_id())
            mixed.insert(self.rng.randrange(len(mixed) + 1), chr(self.rng.randrange(0x20)))
            return _text("".join(mixed))
        return self.rng.choice(NOT_IDS)

    def id_value(self) -> Value:
        """The JSON text of an id and what it causes: strings, integers and bad ones."""
        roll = self.rng.random()
        if roll < 0.6:
            return _text(self.good_id()), VALID
        if roll < 0.75:  # integers are ids (as text); 2**64 and beyond arrive as floats
            return str(self.rng.choice((0, 7, -42, 2**63 - 1, 2**64 - 1))), VALID
        return self.bad_id_text(), BAD

    def pick(self, *values: Value) -> Value:
        return self.rng.choice(values)

    # -- whole payloads ----------------------------------------------------------------
    def broken(self, valid: bytes, max_bytes: int) -> tuple[bytes | None, Reasons, str]:
        """A payload no validator can accept, and the reasons it may give."""
        kind = self.rng.randrange(8)
        structural = frozenset({"not_json", "not_object"})
        if kind == 0:
            raw = self.rng.randbytes(self.rng.randint(0, 64))
            return raw, structural | {"oversized"}, "random bytes"
        if kind == 1:
            return valid[: self.rng.randrange(len(valid))], frozenset({"not_json"}), "truncated"
        if kind == 2:
            depth = self.rng.choice((10, 1025, 5000))
            raw = b"[" * depth + b"]" * depth
            return raw, structural | {"oversized"}, f"nested {depth}"
        if kind == 3:
            raw = f'{{"a":{"{" * 3000}'.encode() + valid
            return raw, frozenset({"not_json", "oversized"}), "deep object"
        if kind == 4:
            raw = self.rng.choice((b"[]", b'"text"', b"42", b"null", b"true", b'[{"type":1}]'))
            return raw, frozenset({"not_object"}), "not an object"
        if kind == 5:
            return (
                valid.replace(b"}", b',"pad":"' + b"x" * max_bytes + b'"}'),
                frozenset({"oversized"}),
                "oversized",
            )
        if kind == 6:
            return b"\xff\xfe" + valid, frozenset({"not_json"}), "not UTF-8"
        return None, frozenset({"not_json", "missing_field"}), "tombstone"

    def mutate_field(
        self, fields: Fields, spot: Spot, drawn: dict[tuple[str, str], Reasons]
    ) -> None:
        """One hostile change to a field: gone, null, not JSON, a new value or a duplicate
        key (the decoder keeps the last one). ``drawn`` keeps what each new value causes."""
        name, roll = spot.name, self.rng.random()
        if roll < 0.15:
            fields[:] = [(k, v) for k, v in fields if k != name]
        elif roll < 0.25:
            fields.append((name, "null"))
        elif roll < 0.35:
            fields.insert(self.rng.randrange(len(fields) + 1), (name, self.rng.choice(NOT_JSON)))
        else:
            text, drawn[name, text] = spot.draw()
            if roll < 0.5 and any(k == name for k, _ in fields):
                fields.append((name, text))
            else:
                fields[:] = [(k, v) for k, v in fields if k != name] + [(name, text)]

    @staticmethod
    def judge(fields: Fields, spots: list[Spot], drawn: dict[tuple[str, str], Reasons]) -> Reasons:
        """The reasons the mutated body may be refused for, from what each field ended as."""
        reasons: set[str] = set()
        for spot in spots:
            texts = [v for k, v in fields if k == spot.name]
            if any(t in NOT_JSON for t in texts):
                reasons.add("not_json")
            elif not texts:
                reasons |= spot.absent
            elif texts[-1] == "null":
                reasons |= spot.absent if spot.null is None else spot.null
            else:
                reasons |= drawn.get((spot.name, texts[-1]), VALID)
        return frozenset(reasons)

    def case(
        self,
        fields: Fields,
        spots: list[Spot],
        key_of: Callable[[Fields], bytes | None],
        max_bytes: int,
    ) -> Case:
        """Mutate a valid body at some of its ``spots`` (or break it whole), and pick its key:
        the right one most often, else none, another or undecodable bytes."""
        if self.rng.random() < 0.15:
            raw, refused, kind = self.broken(render(fields), max_bytes)
            return Case(self.rng.choice((key_of(fields), None, b"k")), raw, refused, [kind])
        drawn: dict[tuple[str, str], Reasons] = {}
        what: list[str] = []
        for _ in range(self.rng.choice((0, 0, 1, 1, 2, 3))):
            spot = self.rng.choice(spots)
            self.mutate_field(fields, spot, drawn)
            what.append(spot.name)
        if self.rng.random() < 0.3:
            self.rng.shuffle(fields)
        reasons = self.judge(fields, spots, drawn)
        key = key_of(fields)
        if self.rng.random() < 0.15 and key is not None:
            key = self.rng.choice((None, key + b" ", b"", b"\xff", key.upper() + b"\x00"))
            reasons = reasons or frozenset({"key_mismatch"})
            what.append("key")
        return Case(key, render(fields), reasons, what)

    # -- the three input topics --------------------------------------------------------
    def event(self, max_bytes: int) -> Case:
        kind = self.rng.choice(list(EventType))
        user = self.good_id()
        fields: Fields = [("event_id", _text(self.good_id())), ("type", _text(kind.value))]
        fields += [("user_id", _text(user)), ("ts", repr(self.now - self.rng.uniform(0, 1e6)))]
        if kind in ITEM_TYPES:
            fields.append(("item_id", _text(self.good_id())))
        if kind in TARGET_USER_TYPES:
            fields.append(("target_user_id", _text(self.good_id()[1:] + "→")))  # not the user
        if self.rng.random() < 0.3:
            fields.append(("stream_id", _text(self.good_id())))
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
        item = self.good_id()
        fields: Fields = [("item_id", _text(item)), ("title", _text(self.free_text()))]
        for name in ("category", "merchant_id", "brand"):
            if self.rng.random() < 0.7:
                fields.append((name, _text(self.good_id())))
        fields += [("price", repr(self.rng.uniform(0, 1e4))), ("tags", _text(["a", "新"]))]
        spots = [
            Spot("item_id", self.id_value, frozenset({"missing_field"})),
            Spot("category", self.optional_id),
            Spot("merchant_id", self.optional_id),
            Spot("title", lambda: self.pick((_text(self.free_text()), VALID), ("7", VALID))),
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
        fields: Fields = [("request_id", _text(self.good_id())), ("type", '"erase"')]
        fields.append(("user_id", _text(self.good_id())))
        missing, unknown = frozenset({"missing_field"}), frozenset({"unknown_type"})
        spots = [
            Spot("request_id", self.id_value, missing),
            Spot("user_id", self.id_value, missing),
            Spot("type", lambda: self.pick(('"export"', unknown), ("1", unknown)), unknown),
        ]
        case = self.case(fields, spots, _user_key, MAX_REQUEST_BYTES)
        if case.reasons == {"key_mismatch"}:
            case.reasons = VALID  # honoured whatever its key: see streams/privacy.py
        return case

    def optional_id(self) -> Value:
        text, reasons = self.id_value()
        return (text, VALID) if text == '""' else (text, reasons)

    def free_text(self) -> str:
        return "".join(self.char() for _ in range(self.rng.randint(0, 40)))


FOLLOWS: Final = frozenset({EventType.FOLLOW, EventType.UNFOLLOW})


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
