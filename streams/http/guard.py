"""Who may call which route, how often, and how many expensive requests at once.

One aiohttp middleware in front of every page of the worker's web server and of each
``socialrec api`` (the API, the live pages, ``/metrics``; streams/http/web.py puts it there). Each
route template has a :class:`Rule`; a route without one (Faust's own pages, a typo) is the
operator's only, so a new page is closed until someone opens it.
``/health`` stays open: orchestrators probe it without credentials.

==========================  ========================================  ===========
route                       roles (the operator may call every one)   bound to
==========================  ========================================  ===========
API description             frontend, merchant                        -
recommendations, query      frontend                                  -
trending                    frontend                                  -
why                         (operator only)                           -
merchant figures            merchant                                  merchant_id
live page and its events    host (signed link)                        stream_id
/metrics                    (operator only)                           -
==========================  ========================================  ===========

Refusals are JSON ``{"error": ...}`` like the API's: 401 without valid credentials (with
``WWW-Authenticate``), 403 for a valid caller on a route of another role, merchant or stream,
429 past the key's rate (``Retry-After``), 503 when too many expensive requests are running.
Each is counted in ``socialrec_http_refusals_total{route, reason}``; nothing is logged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from aiohttp import web as aioweb

from streams.config import ConfigError, Settings
from streams.http.api_spec import DEFAULT_WINDOW_S, MAX_WINDOW_S, MIN_WINDOW_S
from streams.http.auth import FRONTEND, HOST, MERCHANT, OPERATOR, Keyring, Principal, verify_link
from streams.http.http_input import ApiError, error_response, query_int
from streams.http.ratelimit import RateLimiter
from streams.metrics import HttpMetrics

log = logging.getLogger(__name__)

#: Tokens of the key's rate one /why takes: it ranks the user's candidates (about ten times a
#: published list's read, measured in tests/e2e/test_api.py).
WHY_COST: Final = 10
#: Merchant figures take a token per hour of window (61 buckets summed per hour).
MERCHANT_COST_S: Final = 3600
#: Why a request was refused: the ``reason`` label values, and the status each answers.
STATUS: Final = {
    "missing": 401,
    "invalid": 401,
    "expired": 401,
    "role": 403,
    "scope": 403,
    "rate_limited": 429,
    "busy": 503,
    "connections": 503,
}
MESSAGES: Final = {
    "missing": "credentials required: send 'Authorization: Bearer <API key>' "
    "(a host opens the signed link they were given)",
    "invalid": "unknown API key, or a link that is not valid",
    "expired": "this link has expired: ask for a new one",
    "role": "this key's role may not use this route",
    "scope": "this key or link is for another merchant or stream",
    "rate_limited": "too many requests for this key: retry after the Retry-After seconds",
    "busy": "too many expensive requests at once on this worker: retry shortly",
}
OPEN_ROUTES: Final = frozenset({"/health"})
OTHER_ROUTE: Final = "other"


def merchant_cost(query: Mapping[str, str]) -> int:
    """Tokens of a merchant request: one per started hour of its window, read as the handler
    reads it (a bad window: 1, the handler refuses it).

    >>> merchant_cost({}), merchant_cost({"window_s": "600"}), merchant_cost({"window_s": "86400"})
    (1, 1, 24)
    >>> merchant_cost({"window_s": "²"}), merchant_cost({"window_s": "9" * 5000})
    (1, 1)
    """
    try:
        window = query_int(query, "window_s", DEFAULT_WINDOW_S, MIN_WINDOW_S, MAX_WINDOW_S)
    except ApiError:
        return 1
    return math.ceil(window / MERCHANT_COST_S)


@dataclass(frozen=True)
class Rule:
    """The roles besides the operator that may call a route, the path parameter their key
    or link must match, and what a call costs."""

    roles: frozenset[str] = frozenset()
    bound: str | None = None
    cost: Callable[[Mapping[str, str]], int] = lambda _: 1
    costly: bool = False  # counts against SOCIALREC_API_COSTLY_CONCURRENCY


OPERATOR_ONLY: Final = Rule()
RULES: Final[Mapping[str, Rule]] = {
    "/api/v1/openapi.json": Rule(frozenset({FRONTEND, MERCHANT})),
    "/api/v1/users/{user_id}/recommendations": Rule(frozenset({FRONTEND})),
    "/api/v1/users/{user_id}/why/{item_id}": Rule(cost=lambda _: WHY_COST, costly=True),
    "/api/v1/trending/{scope}": Rule(frozenset({FRONTEND})),
    "/api/v1/merchants/{merchant_id}": Rule(
        frozenset({MERCHANT}), "merchant_id", merchant_cost, costly=True
    ),
    "/api/v1/query": Rule(frozenset({FRONTEND})),
    "/live/{stream_id}": Rule(frozenset({HOST}), "stream_id"),
    "/live/{stream_id}/events": Rule(frozenset({HOST}), "stream_id"),
    "/metrics": OPERATOR_ONLY,
}
#: Every value of the ``route`` label.
ROUTE_LABELS: Final = (*RULES, OTHER_ROUTE)
#: Who everyone is with SOCIALREC_AUTH=off.
ANYONE: Final = Principal(OPERATOR, None, "")


def refusal(reason: str, retry_after: float | None = None) -> aioweb.Response:
    """The JSON answer of a refusal, in the API's error form."""
    headers = {}
    if STATUS[reason] == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="socialrec"'
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return error_response(STATUS[reason], MESSAGES[reason], headers)


class Guard:
    """Decides each request: the middleware is :meth:`middleware`."""

    def __init__(self, settings: Settings, keyring: Keyring | None, metrics: HttpMetrics):
        self.keyring = keyring  # None: SOCIALREC_AUTH=off
        self.secret = settings.host_link_secret
        self.limiter = RateLimiter(settings.api_rate_per_s, settings.api_rate_burst)
        self.max_costly = settings.api_costly_concurrency
        self.costly = 0
        self.refused = metrics.http_refusals
        self.clock: Callable[[], float] = time.time
        for route in ROUTE_LABELS:  # every series from the start: dashboards see zeros
            for reason in STATUS:
                self.refused.labels(route, reason)

    def identify(self, request: aioweb.Request, rule: Rule) -> Principal | str:
        """The caller, or why it is not one (``missing``, ``invalid``, ``expired``)."""
        if self.keyring is None:
            return ANYONE
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, key = header.strip().partition(" ")
            found = self.keyring.verify(key.strip()) if scheme.lower() == "bearer" else None
            return found or "invalid"
        query = request.query
        if HOST in rule.roles and "sig" in query:
            stream, expires = query.get("stream", ""), query.get("exp", "")
            return verify_link(self.secret, stream, expires, query["sig"], self.clock())
        return "missing"

    def check(self, request: aioweb.Request, rule: Rule) -> tuple[str, float | None] | None:
        """None when the request may go on, else the refusal's reason and Retry-After."""
        who = self.identify(request, rule)
        if isinstance(who, str):
            return who, None
        if who.role != OPERATOR:
            if who.role not in rule.roles:
                return "role", None
            if rule.bound is not None and request.match_info.get(rule.bound) != who.bound:
                return "scope", None
        if rule.costly and self.costly >= self.max_costly:
            return "busy", 1.0
        if self.keyring is not None:
            wait = self.limiter.take(who.bucket, rule.cost(request.query), time.monotonic())
            if wait > 0:
                return "rate_limited", wait
        return None

    @aioweb.middleware
    async def middleware(
        self, request: aioweb.Request, handler: Callable[[aioweb.Request], Awaitable[Any]]
    ) -> aioweb.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else OTHER_ROUTE
        if route in OPEN_ROUTES:
            return cast(aioweb.StreamResponse, await handler(request))
        rule = RULES.get(route, OPERATOR_ONLY)
        refused = self.check(request, rule)
        if refused is not None:
            reason, retry_after = refused
            self.refused.labels(route if route in RULES else OTHER_ROUTE, reason).inc()
            return refusal(reason, retry_after)
        if not rule.costly:
            return cast(aioweb.StreamResponse, await handler(request))
        self.costly += 1
        try:
            return cast(aioweb.StreamResponse, await handler(request))
        finally:
            self.costly -= 1


def load_guard(
    settings: Settings, metrics: HttpMetrics, process: str = "worker", port: int | None = None
) -> Guard:
    """The guard of these settings; refuses (exits with what to fix) to guard nothing.
    ``process`` names the command in that message (``worker`` or ``api``), ``port`` the port
    it serves on (default the worker's, ``SOCIALREC_WEB_PORT``)."""
    if settings.auth == "off":
        log.warning(
            "SOCIALREC_AUTH=off: every route is open to whoever reaches %s:%d",
            settings.web_host,
            settings.web_port if port is None else port,
        )
        return Guard(settings, None, metrics)
    keyring = Keyring.load(settings)
    if not keyring.entries and not settings.host_link_secret:
        raise ConfigError(
            f"socialrec {process}: no API keys configured. Make one with `socialrec keys new "
            "--role operator` and put the line it prints in SOCIALREC_API_KEYS_FILE (or "
            "SOCIALREC_API_KEYS); for a local demo only, SOCIALREC_AUTH=off opens every route"
        )
    log.info(
        "HTTP access: keys by role %s; host links %s",
        keyring.roles(),
        "on" if settings.host_link_secret else "off (no SOCIALREC_HOST_LINK_SECRET)",
    )
    return Guard(settings, keyring, metrics)
