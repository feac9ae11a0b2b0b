"""The HTTP routes' own input, hostile: trending scopes, integer query parameters and the
query's JSON body, each with the status it must get (200, or 400 / 413 for a refusal)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from streams.http.api_spec import (
    MAX_BODY_BYTES,
    MAX_K,
    MAX_QUERY_CHARS,
    MAX_TRENDING_K,
    MAX_WINDOW_S,
    MIN_WINDOW_S,
)
from streams.http.http_input import path_segment
from tests.fuzz.ids import bad_id, free_text, good_id, json_text
from tests.fuzz.records import BAD, VALID, Fields, RecordFuzzer, Spot, last, render

#: Integer query parameters no route accepts, whatever its bounds (4,400 digits: past what
#: int() converts; longer, the URL would pass aiohttp's 8,190 bytes and never reach a route).
BAD_INTS: Final = (
    "", "0", "-1", "%C2%B2", "%EF%BC%91%EF%BC%90", "1e3", "%205", "5%20", "9" * 4400, "NaN",
    "0x10", "1_0", "%2B5", "5.0", "%00", "%ff", "99999999999999999999999",
)  # fmt: skip
SCOPE_KINDS: Final = ("category", "merchant", "stream")
WORDS: Final = ("phone", "智能手机", "smartphone case", "我想买一个手机", "🛍", "the of a", "x")


@dataclass
class Input:
    """A route's own part of a request: query, body, path segments, the status it causes,
    and what a 200 answer must carry."""

    query: str = ""
    body: bytes | None = None
    status: int = 200
    segments: dict[str, str] = field(default_factory=dict)
    echo: dict[str, str] = field(default_factory=dict)
    what: list[str] = field(default_factory=list)


class InputFuzzer(RecordFuzzer):
    """Seeded hostile input of each route."""

    def input_for(self, route: str) -> Input:
        if route == "/api/v1/trending/{scope}":
            made = self.scope()
            query, ok = self.int_param("k", 1, MAX_TRENDING_K)
            made.query = query
            made.status = 200 if ok and made.status == 200 else 400
            return made
        if route == "/api/v1/merchants/{merchant_id}":
            query, ok = self.int_param("window_s", MIN_WINDOW_S, MAX_WINDOW_S)
            return Input(query, status=200 if ok else 400)
        if route == "/api/v1/query":
            return self.query_body()
        return Input()

    def text(self) -> str:
        """A search text: words people type, or any characters (never blank)."""
        text = self.rng.choice((*WORDS, free_text(self.rng, 60)))
        return text if text.strip() else text + "x"

    def int_param(self, name: str, low: int, high: int) -> tuple[str, bool]:
        """``name=<value>`` (or nothing) and whether the route accepts it."""
        roll = self.rng.random()
        if roll < 0.3:
            return "", True
        if roll < 0.65:  # log-uniform: a day's window (1,441 buckets read) now and then only
            value = str(min(high, int(low * (high / low) ** self.rng.random())))
            return f"{name}={self.rng.choice(('', '0'))}{value}", True
        value = self.rng.choice((*BAD_INTS, str(low - 1), str(high + 1)))
        return f"{name}={value}", False

    def scope(self) -> Input:
        """A trending scope's segment: global, ``<kind>:<id>``, or something else."""
        roll, kind = self.rng.random(), self.rng.choice(SCOPE_KINDS)
        if roll < 0.15:
            scope, ok = "global", True
        elif roll < 0.7:
            scope, ok = f"{kind}:{good_id(self.rng)}", True
        elif roll < 0.85:
            scope, ok = f"{kind}:{bad_id(self.rng)}", False
        else:
            scope = self.rng.choice(("GLOBAL", "global:", "user:u1", kind, good_id(self.rng)))
            ok = scope == "global"
        raw = path_segment(scope)
        if self.rng.random() < 0.3:
            raw = raw.replace("%3A", ":", 1)  # the colon may come unencoded
        echo = {"scope": scope} if ok else {}
        return Input(status=200 if ok else 400, segments={"scope": raw}, echo=echo)

    def query_body(self) -> Input:
        """A query's body: valid, mutated field by field, or broken whole."""
        fields: Fields = [("text", json_text(self.text()))]
        if self.rng.random() < 0.5:
            fields.append(("user_id", json_text(good_id(self.rng))))
        if self.rng.random() < 0.5:
            fields.append(("k", str(self.rng.randint(1, MAX_K))))
        if self.rng.random() < 0.1:
            raw, _, kind = self.broken(render(fields), MAX_BODY_BYTES)
            return Input(body=raw or b"", status=400, what=[kind])
        long_text = json_text("x" * (MAX_QUERY_CHARS + 1))
        spots = [
            Spot(
                "text",
                lambda: self.pick(
                    (json_text(self.text()), VALID),
                    ('""', BAD),
                    ('" \\t\\n "', BAD),
                    (long_text, BAD),
                    ("5", BAD),
                    ('["phone"]', BAD),
                ),
                absent=BAD,
            ),
            Spot("user_id", self.id_value),
            Spot(
                "k",
                lambda: self.pick(
                    (str(self.rng.randint(1, MAX_K)), VALID),
                    *((text, BAD) for text in ("0", str(MAX_K + 1), "-3", "5.0", '"5"', "true")),
                    ("18446744073709551616", BAD),  # past 64 bits: a float
                ),
                null=BAD,
            ),
            Spot("extra", lambda: ("1", BAD), null=BAD),  # an unknown field
        ]
        reasons, what = self.mutated(fields, spots)
        text = last(fields, "text")
        echo = {"text": text} if not reasons and isinstance(text, str) else {}
        return Input(body=render(fields), status=400 if reasons else 200, echo=echo, what=what)
