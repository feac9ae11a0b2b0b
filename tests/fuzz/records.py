"""A seeded mutator of JSON records that knows what each mutation must make a validator say.

Each record starts valid and gets a few mutations (a field gone, null, not JSON, a new value, a
duplicate key), or is broken whole (random bytes, truncated, deeply nested, not an object,
oversized, not UTF-8, a tombstone). Every mutation says whether it keeps the record valid or
which reasons may reject it, so a test checks the answer, not only that nothing raised.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import orjson

from tests.fuzz.ids import bad_id_text, good_id, json_text

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


def render(fields: Fields) -> bytes:
    return ("{" + ",".join(f"{json_text(k)}:{v}" for k, v in fields) + "}").encode()


def last(fields: Fields, name: str) -> object:
    """What the decoder will see for ``name`` (the last duplicate wins), or None."""
    found = [v for k, v in fields if k == name]
    return None if not found or found[-1] in NOT_JSON else orjson.loads(found[-1])


class RecordFuzzer:
    """Seeded mutations of records; :class:`tests.fuzz.topics.Fuzzer` makes the topics' ones."""

    def __init__(self, seed: int, now: float) -> None:
        self.rng = random.Random(seed)
        self.now = now

    def id_value(self) -> Value:
        """The JSON text of an id and what it causes: strings, integers and bad ones."""
        roll = self.rng.random()
        if roll < 0.6:
            return json_text(good_id(self.rng)), VALID
        if roll < 0.75:  # integers are ids (as text); 2**64 and beyond arrive as floats
            return str(self.rng.choice((0, 7, -42, 2**63 - 1, 2**64 - 1))), VALID
        return bad_id_text(self.rng), BAD

    def optional_id(self) -> Value:
        text, reasons = self.id_value()
        return (text, VALID) if text == '""' else (text, reasons)

    def pick(self, *values: Value) -> Value:
        return self.rng.choice(values)

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

    def mutated(self, fields: Fields, spots: list[Spot]) -> tuple[Reasons, list[str]]:
        """Mutate a valid body in place at some of its ``spots``: what it may now be refused
        for, and which fields were hit."""
        drawn: dict[tuple[str, str], Reasons] = {}
        what: list[str] = []
        for _ in range(self.rng.choice((0, 0, 1, 1, 2, 3))):
            spot = self.rng.choice(spots)
            self.mutate_field(fields, spot, drawn)
            what.append(spot.name)
        if self.rng.random() < 0.3:
            self.rng.shuffle(fields)
        return self.judge(fields, spots, drawn), what

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
        reasons, what = self.mutated(fields, spots)
        key = key_of(fields)
        if self.rng.random() < 0.15 and key is not None:
            key = self.rng.choice((None, key + b" ", b"", b"\xff", key.upper() + b"\x00"))
            reasons = reasons or frozenset({"key_mismatch"})
            what.append("key")
        return Case(key, render(fields), reasons, what)
