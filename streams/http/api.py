"""The HTTP API (JSON, under ``/api/v1``): the handlers, and the table of their routes.

Two kinds of process serve it, from the same :func:`api_routes` mounted by
:func:`streams.http.web.mount`: the worker, on its Faust web server (everything it answers from is
already there), and any number of ``socialrec api`` processes (streams/http/serving.py), which
read only what the workers keep in Redis and so scale apart from event processing. Handlers
read only; the one write they cause is through :class:`streams.runtime.analytics.MerchantAnalytics`,
which the worker attaches to its batch processor so that merchant figures are counted as
events are applied. Trending is served from the lists as last published
(:func:`streams.runtime.trending.last_published`), never recounted per request.

Errors are JSON ``{"error": "..."}`` saying what was wrong (streams/http/http_input.py): 400 for bad
parameters or bodies, 404 for unknown routes, 405 for a wrong method, 413 for a body over
:data:`MAX_BODY_BYTES`, 500 without details, on every page (the live pages and ``/metrics``
too). Logs name the route, never ids or payloads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from aiohttp import web as aioweb

from models.funnel import exposure_share, funnel
from models.recommend import Recommendations, candidate_pools
from models.textsearch import Boosts, analyse, load, rerank
from models.trending import TrendingList, merchant_scope
from models.why import explain
from streams.config import Settings
from streams.http.api_spec import (
    DEFAULT_WINDOW_S,
    MAX_BODY_BYTES,
    MAX_TRENDING_K,
    MAX_WINDOW_S,
    MIN_WINDOW_S,
    ROUTES,
    openapi_spec,
)
from streams.http.http_input import (
    ApiError,
    Json,
    check_id,
    check_scope,
    error_response,
    json_response,
    parse_query,
    query_int,
)
from streams.http.search import CatalogSearch
from streams.pipeline import BatchProcessor, InboundRecord, recommendations_json
from streams.runtime.analytics import EXPOSURE, MerchantAnalytics
from streams.runtime.trending import last_published, trending_json
from streams.sources.content import RedisContent
from streams.store import RedisStore

log = logging.getLogger(__name__)

#: Matches considered before re-ranking, per result asked for.
MATCH_DEPTH = 5


def trending_body(result: TrendingList, now: float) -> Json:
    """The trending topic's wire form (streams/runtime/trending.py), as an object."""
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
        raw = await self.deps.store.cached_recommendations(user_id)
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

    async def _last_published(self, scope: str, now: float, k: int) -> TrendingList:
        window_s = self.deps.settings.trending_window_s
        (result,) = await last_published(self.deps.store, [scope], now, k, window_s)
        return result

    async def trending(self, request: aioweb.Request, scope: str) -> Json:
        check_scope(scope)
        k = query_int(request.query, "k", 20, 1, MAX_TRENDING_K)
        now = self.clock()
        return trending_body(await self._last_published(scope, now, k), now)

    async def merchant(self, request: aioweb.Request, merchant_id: str) -> Json:
        check_id(merchant_id, "merchant_id")
        window_s = query_int(
            request.query, "window_s", DEFAULT_WINDOW_S, MIN_WINDOW_S, MAX_WINDOW_S
        )
        now = self.clock()
        counts, rising = await asyncio.gather(
            self.analytics.window(merchant_id, now, window_s),
            self._last_published(merchant_scope(merchant_id), now, 10),
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

    async def warm(self) -> None:
        """Load jieba's dictionary (loaded already in a worker) and the catalogue index off
        the request path."""
        try:
            await asyncio.to_thread(load)
            await self.search.sync()
        except Exception as exc:  # the first query retries the sync
            log.warning("search index warm-up failed (%s)", type(exc).__name__)


def build_api(deps: ApiDeps) -> Api:
    """The handlers over ``deps`` (the worker also hands ``analytics`` to its processor)."""
    keys = deps.store.keys
    return Api(deps, MerchantAnalytics(deps.redis, keys), CatalogSearch(deps.redis, keys))


Handler = Callable[..., Awaitable[Json]]
Route = tuple[str, str, Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]]


def _json_route(handler: Handler) -> Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]:
    """An aiohttp handler that runs ``handler`` with the path's parameters and answers JSON."""

    async def route(request: aioweb.Request) -> aioweb.StreamResponse:
        try:
            body = await handler(request, **request.match_info)
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        return json_response(body)

    route.__doc__ = handler.__doc__
    return route


def api_routes(api: Api) -> list[Route]:
    """(method, route template, aiohttp handler) of every API route (streams/http/api_spec.py)."""
    handlers: dict[str, Handler] = {
        "/api/v1/openapi.json": api.openapi,
        "/api/v1/users/{user_id}/recommendations": api.recommendations,
        "/api/v1/users/{user_id}/why/{item_id}": api.why,
        "/api/v1/trending/{scope}": api.trending,
        "/api/v1/merchants/{merchant_id}": api.merchant,
        "/api/v1/query": api.query,
    }
    return [(method, path, _json_route(handlers[path])) for method, path in ROUTES]


@aioweb.middleware
async def json_errors(request: aioweb.Request, handler: Any) -> aioweb.StreamResponse:
    """Routing errors (404, 405, 413) and failures (500) as JSON, no traces: on every page,
    so that whatever a caller gets wrong, the answer has the same form."""
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
