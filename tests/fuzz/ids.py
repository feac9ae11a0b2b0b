"""Ids from all of Unicode: the ones the id rule accepts, the ones it refuses, and values
that are no id at all. Drawn from a seeded ``random.Random`` (fast enough for tens of
thousands of cases) or, for property tests, from :data:`ids`, a hypothesis strategy.
"""

from __future__ import annotations

import random
from typing import Final

import orjson
from hypothesis import strategies as st

from models.events import MAX_ID_LENGTH, is_valid_id

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


def json_text(value: object) -> str:
    return orjson.dumps(value).decode()


def char(rng: random.Random) -> str:
    """Any Unicode scalar value but a surrogate, the low planes more often."""
    high = rng.choice((0x80, 0x3000, 0x11000, 0x10FFFF))
    code = rng.randrange(0, high)
    return chr(code) if not 0xD800 <= code <= 0xDFFF else "\ufffd"


def free_text(rng: random.Random, longest: int = 40) -> str:
    return "".join(char(rng) for _ in range(rng.randint(0, longest)))


def good_id(rng: random.Random) -> str:
    """A valid id: an awkward one, a plain one, or random characters."""
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(AWKWARD_IDS)
    if roll < 0.3:
        return f"u{rng.randrange(10**6)}"
    while True:
        text = "".join(char(rng) for _ in range(rng.randint(1, 24)))
        if is_valid_id(text):
            return text


def with_control(rng: random.Random) -> str:
    """A valid id with a control character put in."""
    mixed = list(good_id(rng))
    mixed.insert(rng.randrange(len(mixed) + 1), chr(rng.randrange(0x20)))
    return "".join(mixed)


def bad_id(rng: random.Random) -> str:
    """A string the id rule refuses: a known bad one, or one with a control character."""
    return rng.choice(BAD_IDS) if rng.random() < 0.7 else with_control(rng)


def bad_id_text(rng: random.Random) -> str:
    """The JSON text of a value the id rule refuses (bad_field)."""
    roll = rng.random()
    if roll < 0.5:
        return json_text(rng.choice(BAD_IDS))
    if roll < 0.7:
        return json_text(with_control(rng))
    return rng.choice(NOT_IDS)


def id_pool(seed: int, size: int) -> list[str]:
    """``size`` distinct valid ids, awkward ones included, the same for the same seed."""
    rng, pool = random.Random(seed), dict.fromkeys(AWKWARD_IDS[: size // 2])
    while len(pool) < size:
        pool.setdefault(good_id(rng))
    return list(pool)
