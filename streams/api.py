"""The worker's HTTP API (JSON, under ``/api/v1``), on Faust's aiohttp web server.

Why in the worker: everything it answers from is already there (the store, the sources, the
latest trending list, the catalogue's text index), so a read costs a Redis round trip or two
and no extra service has to be run. Handlers read only; the one write they cause is through
:class:`streams.analytics.MerchantAnalytics`, which :func:`register_api` attaches to the batch
processor so that merchant figures are counted as events are applied.

Errors are JSON ``{"error": "..."}`` saying what was wrong: 400 for bad parameters or bodies,
404 for unknown routes under ``/api/``, 405 for a wrong method, 413 for a body over
:data:`MAX_BODY_BYTES`, 500 without details. Logs name the route, never ids or payloads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import faust
import orjson
import redis.asyncio as aioredis
from aiohttp import web as aioweb
from faust.web import View

from models.funnel import exposure_share, funnel
from models.recommend import Recommendations, candidate_pools
from models.textsearch import Boosts, analyse, rerank, words
from models.trending import GLOBAL_SCOPE, TrendingList, merchant_scope
from models.why import explain
from streams.analytics import EXPOSURE, MerchantAnalytics
from streams.api_spec import (
    MAX_BODY_BYTES,
    MAX_ID_CHARS,
    MAX_K,
    MAX_QUERY_CHARS,
    MAX_TRENDING_K,
    MAX_WINDOW_S,
    MIN_WINDOW_S,
    ROUTES,
    openapi_spec,
)
from streams.config import Settings
from streams.pipeline import BatchProcessor, InboundRecord, recommendations_json
from streams.search import CatalogSearch
from streams.sources.content import RedisContent
from streams.store import RedisStore
from streams.trending import trending_json

log = logging.getLogger(__name__)

#: Scope kinds of the trending endpoint (besides ``global``).
SCOPE_KINDS = ("category", "merchant", "stream")
#: Matches considered before re-ranking, per result asked for.
MATCH_DEPTH = 5


class ApiError(Exception):
    """A request the API refuses: the status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Json = dict[str, Any]


def json_response(body: object, status: int = 200) -> aioweb.Response:
    return aioweb.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(status: int, message: str) -> aioweb.Response:
    return json_response({"error": message}, status)


def check_id(value: str, what: str) -> str:
    """A path id: non-empty and at most :data:`MAX_ID_CHARS` characters.

    >>> check_id("u1", "user_id")
    'u1'
    >>> check_id("x" * 200, "user_id")
    Traceback (most recent call last):
    ...
    streams.api.ApiError: user_id must be 1 to 128 characters
    """
    if not value or len(value) > MAX_ID_CHARS:
        raise ApiError(400, f"{what} must be 1 to {MAX_ID_CHARS} characters")
    return value


def int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``[low, high]``.

    >>> int_param({"k": "5"}, "k", 20, 1, 100), int_param({}, "k", 20, 1, 100)
    (5, 20)
    >>> int_param({"k": "0"}, "k", 20, 1, 100)
    Traceback (most recent call last):
    ...
    streams.api.ApiError: query parameter 'k' must be an integer from 1 to 100
    """
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(400, f"query parameter '{name}' must be an integer from {low} to {high}")
    return value


def check_scope(scope: str) -> str:
    """``global`` or ``<kind>:<id>`` with a known kind.

    >>> check_scope("category:phones")
    'category:phones'
    >>> check_scope("user:u1")
    Traceback (most recent call last):
    ...
    streams.api.ApiError: scope must be 'global' or category:, merchant:, stream: and an id
    """
    kind, sep, rest = scope.partition(":")
    if scope == GLOBAL_SCOPE or (sep and kind in SCOPE_KINDS and 0 < len(rest) <= MAX_ID_CHARS):
        return scope
    raise ApiError(400, "scope must be 'global' or category:, merchant:, stream: and an id")


def parse_query(raw: bytes) -> tuple[str, str | None, int]:
    """(text, user_id, k) of a query body, or the reason it is refused.

    >>> parse_query(b'{"text": "phone", "k": 3}')
    ('phone', None, 3)
    >>> parse_query(b'{"text": ""}')
    Traceback (most recent call last):
    ...
    streams.api.ApiError: field 'text' must be a non-empty string of at most 500 characters
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "body must be valid UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    unknown = sorted(set(body) - {"text", "user_id", "k"})
    if unknown:
        raise ApiError(400, f"unknown fields {unknown}: allowed are text, user_id, k")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_QUERY_CHARS:
        raise ApiError(
            400,
            f"field 'text' must be a non-empty string of at most {MAX_QUERY_CHARS} characters",
        )
    user_id = body.get("user_id")
    if user_id is not None and (
        not isinstance(user_id, str) or not user_id or len(user_id) > MAX_ID_CHARS
    ):
        raise ApiError(400, f"field 'user_id' must be a string of 1 to {MAX_ID_CHARS} characters")
    k = body.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ApiError(400, f"field 'k' must be an integer from 1 to {MAX_K}")
    return text, user_id, k


def trending_body(result: TrendingList, now: float) -> Json:
    """The trending topic's wire form (streams/trending.py), as an object."""
    return cast(Json, orjson.loads(trending_json(result, now)))


@dataclass
class ApiDeps:
    """What the handlers read from: the worker's own objects."""

    settings: Settings
    redis: aioredis.Redis
    store: RedisStore
    processor: BatchProcessor
    content: RedisContent | None = None


class Api:
    """The handlers; each returns a JSON-able body or raises :class:`ApiError`."""

    def __init__(self, deps: ApiDeps, analytics: MerchantAnalytics, search: CatalogSearch) -> None:
        self.deps = deps
        self.analytics = analytics
        self.search = search
        self.clock: Callable[[], float] = time.time
        self._spec = orjson.dumps(openapi_spec())

    async def openapi(self, request: aioweb.Request) -> Json:
        return cast(Json, orjson.loads(self._spec))

    async def _published(self, user_id: str) -> Json | None:
        raw = await self.deps.redis.get(self.deps.store.keys.user(user_id, "recommendations"))
        return None if raw is None else cast(Json, orjson.loads(raw))

    async def recommendations(self, request: aioweb.Request, user_id: str) -> Json:
        check_id(user_id, "user_id")
        published = await self._published(user_id)
        if published is not None:
            return {**published, "served_from": "published"}
        ranked = await self.deps.processor.rank_users([user_id])
        return {**self._computed(ranked[user_id]), "served_from": "computed"}

    def _computed(self, recs: Recommendations) -> Json:
        # The published wire form exactly (one encoder), with no triggering event.
        none = InboundRecord(None, None, "", 0, 0, 0.0)
        body = orjson.loads(recommendations_json(recs, none, "", self.deps.settings.model_version))
        body["trigger"] = None
        return cast(Json, body)

    async def why(self, request: aioweb.Request, user_id: str, item_id: str) -> Json:
        check_id(user_id, "user_id")
        check_id(item_id, "item_id")
        processor = self.deps.processor
        now = self.clock()
        result, published = await asyncio.gather(
            self.deps.store.read_users([user_id]), self._published(user_id)
        )
        view = result.views[user_id]
        extra = await processor.user_candidates(result, now)
        pools = candidate_pools(view, processor.params, now, extra.get(user_id, {}))
        answer = explain(
            item_id, view, processor.params, pools, (published or {}).get("items") or []
        )
        return {
            "user_id": user_id,
            "item_id": item_id,
            "status": answer.status,
            "detail": answer.detail,
            "exclusions": list(answer.exclusions),
            "position": answer.position,
            "score": answer.score,
            "cut_score": answer.cut_score,
            "sources": answer.sources,
            "reasons": list(answer.reasons),
        }

    async def trending(self, request: aioweb.Request, scope: str) -> Json:
        check_scope(scope)
        k = int_param(request.query, "k", 20, 1, MAX_TRENDING_K)
        now = self.clock()
        (result,) = await self.deps.store.trending([scope], now, k)
        return trending_body(result, now)

    async def merchant(self, request: aioweb.Request, merchant_id: str) -> Json:
        check_id(merchant_id, "merchant_id")
        window_s = int_param(request.query, "window_s", 3600, MIN_WINDOW_S, MAX_WINDOW_S)
        now = self.clock()
        counts, (rising,) = await asyncio.gather(
            self.analytics.window(merchant_id, now, window_s),
            self.deps.store.trending([merchant_scope(merchant_id)], now, 10),
        )
        own = {k: v for k, v in counts.counts.items() if k != EXPOSURE}
        slots = counts.counts.get(EXPOSURE, 0)
        figures = funnel(own)
        items = trending_body(rising, now)["items"]
        items.sort(key=lambda i: (-i["velocity"], -i["count"], i["item_id"]))
        return {
            "merchant_id": merchant_id,
            "window_s": window_s,
            "funnel": {"counts": figures.counts, "rates": figures.rates},
            "exposure": {
                "slots": slots,
                "total_slots": counts.total_exposure,
                "share": exposure_share(slots, counts.total_exposure),
            },
            "rising": items,
        }

    async def query(self, request: aioweb.Request) -> Json:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise ApiError(413, f"body must be at most {MAX_BODY_BYTES} bytes")
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, f"body must be at most {MAX_BODY_BYTES} bytes")
        text, user_id, k = parse_query(raw)
        terms = analyse(text)
        await self.search.sync_if_due()
        matches = self.search.index.search(terms, k * MATCH_DEPTH)
        boosts = await self._boosts(user_id, [m.item_id for m in matches])
        results = []
        for r in rerank(matches, boosts, k):
            reasons: list[Json] = [{"type": "matched", "terms": list(r.matched)}]
            for signal, lift in r.boosts:
                reason: Json = {
                    "type": "profile_match" if signal == "content" else signal,
                    "lift": lift,
                }
                if signal == "social":
                    reason["type"] = "social_proof"
                    reason["actions"] = sorted(set(r.social_actions))
                reasons.append(reason)
            results.append(
                {
                    "item_id": r.item_id,
                    "title": self.search.titles.get(r.item_id, ""),
                    "score": round(r.score, 6),
                    "relevance": round(r.relevance, 6),
                    "reasons": reasons,
                }
            )
        return {
            "text": text,
            "terms": [{"text": t.text, "concept": t.concept} for t in terms],
            "personalised": user_id is not None,
            "results": results,
        }

    async def _boosts(self, user_id: str | None, item_ids: list[str]) -> Boosts:
        """The user's live signals for the matched items (trending applies to everyone)."""
        trending = self.deps.processor.trending
        top = max((count for _, count in trending), default=0.0)
        wanted = set(item_ids)
        trend = {i: c / top for i, c in trending if i in wanted and top > 0}
        if user_id is None or not item_ids:
            return Boosts(trending=trend)
        now = self.clock()
        content = self.deps.content
        if content is not None:
            result, scores = await asyncio.gather(
                self.deps.store.read_users([user_id]), content.score(user_id, item_ids, now)
            )
            profile = {i: float(s) for i, s in zip(item_ids, scores, strict=True) if s > 0}
        else:
            result, profile = await self.deps.store.read_users([user_id]), {}
        social: dict[str, list[str]] = {}
        for proof in result.views[user_id].social:
            if proof.item_id in wanted:
                social.setdefault(proof.item_id, []).append(proof.action)
        return Boosts(content=profile, trending=trend, social=social)


Handler = Callable[..., Awaitable[Json]]


def _view(name: str, method: str, handler: Handler) -> type[View]:
    """A Faust view whose ``method`` runs ``handler`` and answers JSON."""

    async def call(self: View, request: Any, **kwargs: Any) -> Any:
        try:
            body = await handler(request, **kwargs)
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        return json_response(body)

    return type(name, (View,), {method: call, "__doc__": handler.__doc__})


@aioweb.middleware
async def json_errors(request: aioweb.Request, handler: Any) -> aioweb.StreamResponse:
    """Under /api/: routing errors (404, 405, 413) and failures (500) as JSON, no traces."""
    if not request.path.startswith("/api/"):
        return cast(aioweb.StreamResponse, await handler(request))
    try:
        return cast(aioweb.StreamResponse, await handler(request))
    except aioweb.HTTPException as exc:
        if exc.status < 400:
            raise
        messages = {
            404: f"no such route: {request.method} {request.path[:200]}",
            405: f"method {request.method} not allowed here",
            413: f"body must be at most {MAX_BODY_BYTES} bytes",
        }
        return error_response(exc.status, messages.get(exc.status, exc.reason))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "?"
        log.error("api request %s %s failed (%s)", request.method, name, type(exc).__name__)
        return error_response(500, "internal error")


def register_api(app: faust.App, deps: ApiDeps) -> Api:
    """Serve the API on the worker's web server, and count merchant figures in the pipeline.

    Call it once while building the app (before it starts): the error middleware has to be
    in place before aiohttp freezes its middleware list.
    """
    analytics = MerchantAnalytics(deps.redis, deps.store.keys)
    deps.processor.analytics = analytics
    api = Api(deps, analytics, CatalogSearch(deps.redis, deps.store.keys))
    handlers: dict[str, Handler] = {
        "/api/v1/openapi.json": api.openapi,
        "/api/v1/users/{user_id}/recommendations": api.recommendations,
        "/api/v1/users/{user_id}/why/{item_id}": api.why,
        "/api/v1/trending/{scope}": api.trending,
        "/api/v1/merchants/{merchant_id}": api.merchant,
        "/api/v1/query": api.query,
    }
    for method, path in ROUTES:
        handler = handlers[path]
        app.page(path, name=f"api_{handler.__name__}")(
            _view(f"api_{handler.__name__}", method, handler)
        )
    # The aiohttp driver (Faust's default) exposes its aiohttp Application as ``web_app``.
    cast(Any, app.web).web_app.middlewares.append(json_errors)

    @app.task  # type: ignore[untyped-decorator]
    async def warm_search() -> None:
        """Load jieba's dictionary and the catalogue index off the request path."""
        try:
            await asyncio.to_thread(words, "预热")
            await api.search.sync()
        except Exception as exc:  # the first query retries the sync
            log.warning("search index warm-up failed (%s)", type(exc).__name__)

    return api
