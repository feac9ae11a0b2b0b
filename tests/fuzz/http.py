"""Hostile requests for every HTTP route of the worker, each with the answer it must get.

A request is drawn in three parts, each of which knows what it causes: the credentials (a
role's key, a host's link, none, a broken header or link: 401, 403 or through), the path's
ids (from all of Unicode, percent-encoded, valid or not: 400 or through), and the route's own
input (:mod:`tests.fuzz.route_inputs`: 400, 413 or 200). The first refusal wins, in the order
the worker decides: routing and the guard, then the handler. Who may call what is the table of
tests/unit/test_guard.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

from models.events import MAX_ID_LENGTH
from streams.http.api_spec import MAX_BODY_BYTES
from streams.http.auth import entry_line, link_query
from streams.http.http_input import path_segment
from tests.fuzz.ids import AWKWARD_IDS, bad_id, free_text, good_id
from tests.fuzz.route_inputs import InputFuzzer
from tests.unit.test_guard import ALLOWED, REQUESTS

#: Keys of the fuzzed worker, and the merchant key's merchant.
KEYS: Final = {"frontend": "sr_fz_f", "merchant": "sr_fz_m", "operator": "sr_fz_o"}
MERCHANT: Final = "m1"
#: Their lines, as SOCIALREC_API_KEYS takes them.
KEYS_TEXT: Final = ",".join(
    entry_line(key, role, MERCHANT if role == "merchant" else None) for role, key in KEYS.items()
)
SECRET: Final = "fuzz-host-link-secret-of-forty-characters"
LIVE: Final = frozenset({"/live/{stream_id}", "/live/{stream_id}/events"})
#: /health of a worker that owns no partition (not ready, as in process): its designed answer.
NOT_READY: Final = 503
#: Authorization headers that name nobody (401).
BAD_HEADERS: Final = ("Bearer", "Bearer ", "Basic c3I6eA==", "Bearer sr_unknown", "sr_fz_o", "  ")
#: Raw path segments and whether the id they decode to is valid (what it decodes to is not
#: checked: '%ff' stays the text '%FF', a lone encoded surrogate stays as sent).
RAW_SEGMENTS: Final = (
    ("%", True),
    ("%zz", True),
    ("%ff", True),
    ("%ED%A0%80", True),
    ("%c3", True),
    ("%2F", True),
    ("%2e%2e", True),
    ("%E2%80%8F%F0%9F%9B%8D", True),  # right-to-left mark, emoji
    ("a+b", True),
    ("%00", False),
    ("%09", False),
    ("%0A", False),
    ("%7F", False),
    ("%C2%85", False),  # a C1 control
    ("%78" * (MAX_ID_LENGTH + 1), False),
)
#: A path id: its value (None: a raw segment, not compared) and whether it is valid.
PathId = tuple[str | None, bool]


@dataclass
class Request:
    """One request and the answer it must get: ``echo`` is what a 200 body must carry."""

    route: str
    method: str
    url: str  # encoded path and query
    headers: dict[str, str]
    body: bytes | None
    status: int
    echo: dict[str, str] = field(default_factory=dict)
    what: list[str] = field(default_factory=list)


class HttpFuzzer(InputFuzzer):
    """Seeded hostile requests for one route template of the worker."""

    def __init__(self, seed: int, route: str, ready: bool = False, let_in: float = 0.5) -> None:
        super().__init__(seed, time.time())
        self.route = route
        self.let_in = let_in  # the share of callers drawn from those the route lets in
        self.health = 200 if ready else NOT_READY  # ready: the worker owns partitions

    def request(self) -> Request:
        method = REQUESTS[self.route][0]
        who, headers, stream = self.credentials()
        ids, segments = self.path_ids(stream)
        made = self.input_for(self.route)
        path = self.route
        for name, segment in {**segments, **made.segments}.items():
            path = path.replace("{" + name + "}", segment)
        query = "&".join(q for q in (self.link(who, stream), made.query, self.junk()) if q)
        wrong_method = self.rng.random() < 0.04
        if wrong_method:
            method = self.rng.choice([m for m in ("GET", "POST", "PUT", "DELETE") if m != method])
        matched = all({**segments, **made.segments}.values())  # an empty segment: no route
        status = self.guard(who, ids, stream, matched and not wrong_method)
        if status == 0:
            status = self.routing(matched, wrong_method, ids) or made.status
        if self.route == "/health" and status == 200:
            status = self.health
        oversized = made.body is not None and len(made.body) > MAX_BODY_BYTES
        if status == 400 and oversized:
            status = 413  # the size is checked before the body is read
        echo = {n: v for n, (v, _) in ids.items() if v is not None and n != "stream_id"}
        echo = {**echo, **made.echo} if status == 200 else {}
        what = [who, *made.what, *(["method"] if wrong_method else [])]
        url = f"{path}?{query}" if query else path
        return Request(self.route, method, url, headers, made.body, status, echo, what)

    def credentials(self) -> tuple[str, dict[str, str], str]:
        """Who calls (a role, ``host``, ``anonymous``, ``bad``), the headers, and the stream
        of a host's link."""
        who = self.rng.choice(("operator", "frontend", "merchant", "host", "anonymous", "bad"))
        if self.rng.random() < self.let_in:
            who = self.rng.choice(sorted(ALLOWED[self.route] - {"anonymous"}) or ["operator"])
        stream = good_id(self.rng)
        if who in KEYS:
            scheme = self.rng.choice(("Bearer", "bearer", "BEARER"))
            pad = self.rng.choice(("", " ", "  "))
            return who, {"Authorization": f"{pad}{scheme} {KEYS[who]}{pad}"}, stream
        if who == "bad" and self.rng.random() < 0.5:
            text = "".join(c for c in free_text(self.rng, 60) if c.isprintable())
            header = self.rng.choice((*BAD_HEADERS, f"Bearer {text}"))
            # As a client sends it (UTF-8 bytes); CR, LF and NUL no client sends at all.
            return who, {"Authorization": header.encode().decode("latin-1")}, stream
        return who, {}, stream

    def link(self, who: str, stream: str) -> str:
        """A host's link (``host``), a broken one (half of ``bad``), or none."""
        expires = int(self.now) + 3600
        if who == "host":
            return link_query(SECRET, stream, expires)
        if who != "bad" or self.rng.random() < 0.5:
            return ""
        good = link_query(SECRET, stream, expires)
        return self.rng.choice(
            (
                link_query(SECRET, stream, int(self.now) - 1),  # expired
                link_query(SECRET, stream, int(self.now) + 30 * 86_400),  # too long
                link_query("another-secret-" * 3, stream, expires),
                good.replace("sig=", "sig=x"),
                good.replace(f"exp={expires}", "exp=%C2%B2"),  # '²'
                good.replace(f"exp={expires}", "exp=" + "9" * 64),
                good.rpartition("sig=")[0] + "sig=%C3%A9%F0%9F%9B%8D",
                f"stream=&exp=&sig={path_segment(free_text(self.rng, 10))}",
            )
        )

    def path_ids(self, stream: str) -> tuple[dict[str, PathId], dict[str, str]]:
        """Each path parameter's id, and its raw segment."""
        ids: dict[str, PathId] = {}
        segments: dict[str, str] = {}
        for name in ("user_id", "item_id", "merchant_id", "stream_id"):
            if "{" + name + "}" not in self.route:
                continue
            roll = self.rng.random()
            if roll < 0.15:
                segments[name], valid = self.rng.choice(RAW_SEGMENTS)
                ids[name] = (None, valid)
                continue
            if name == "stream_id" and roll < 0.6:
                value, valid = stream, True
            elif name == "merchant_id" and roll < 0.4:
                value, valid = MERCHANT, True
            elif roll < 0.25:
                value, valid = self.rng.choice(AWKWARD_IDS), True
            elif roll < 0.7:
                value, valid = good_id(self.rng), True
            else:
                value, valid = bad_id(self.rng), False
            segments[name], ids[name] = path_segment(value), (value, valid)
        return ids, segments

    def junk(self) -> str:
        """Query parameters no route reads (percent-encoded junk, repeats, empty ones)."""
        if self.rng.random() < 0.6:
            return ""
        names = ("q", "user_id", "k%00", "%ff", "a[]", "", "%E2%80%8F")
        values = ("", "%", "%zz", "1e309", "NaN", "%00%0A", "x" * 300, path_segment(self.text()))
        pairs = [f"{self.rng.choice(names)}={self.rng.choice(values)}" for _ in range(3)]
        return "&".join(pairs[: self.rng.randint(1, 3)])

    def guard(self, who: str, ids: dict[str, PathId], stream: str, routed: bool) -> int:
        """The guard's answer: 401 or 403, or 0 when it lets the request through. A request
        no route takes is the operator's; a link counts on the live routes only."""
        allowed = ALLOWED[self.route] if routed else {"operator"}
        if who in ("anonymous", "bad") or (who == "host" and not (routed and self.route in LIVE)):
            return 0 if "anonymous" in allowed else 401
        if who not in allowed:
            return 403
        bound = {"merchant": ("merchant_id", MERCHANT), "host": ("stream_id", stream)}.get(who)
        if bound is not None and bound[0] in ids and ids[bound[0]][0] != bound[1]:
            return 403
        return 0

    def routing(self, matched: bool, wrong_method: bool, ids: dict[str, PathId]) -> int:
        """404 or 405 for a request no route takes, 400 for an invalid path id, else 0."""
        if not matched:
            return 404
        if wrong_method:
            return 405
        return 0 if all(valid for _, valid in ids.values()) else 400
