"""The HTTP API's OpenAPI 3.1 description, served at ``/api/v1/openapi.json``.

Kept beside the handlers (streams/http/api.py) as data: :data:`ROUTES` is what the worker registers,
and a test checks that every route is described here and every description has a route, that
the document is valid OpenAPI, and (end to end) that real answers match these schemas.
OpenAPI 3.1 schemas are JSON Schema 2020-12, so the same validator checks both.

>>> spec = openapi_spec()
>>> sorted(spec["paths"]) == sorted(path for _, path in ROUTES)
True
"""

from __future__ import annotations

from typing import Any, Final

from models.events import CONTROL_PATTERN, ID_RULE, MAX_ID_LENGTH

#: Limits the handlers enforce (documented in the spec); ids follow the events' rule.
MAX_QUERY_CHARS: Final = 500
MAX_BODY_BYTES: Final = 8192
MAX_K: Final = 50
MAX_TRENDING_K: Final = 100
MIN_WINDOW_S: Final = 60
DEFAULT_WINDOW_S: Final = 3600
MAX_WINDOW_S: Final = 86_400

#: (method, path) of every API route, as registered on the worker's web server.
ROUTES: Final = (
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/users/{user_id}/recommendations"),
    ("get", "/api/v1/users/{user_id}/why/{item_id}"),
    ("get", "/api/v1/trending/{scope}"),
    ("get", "/api/v1/merchants/{merchant_id}"),
    ("post", "/api/v1/query"),
)

#: An id by the events' rule (models/events.py): its length (minLength and maxLength count
#: characters as len() does) and no control character.
ID_SCHEMA: Final = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "not": {"pattern": CONTROL_PATTERN},
    "description": f"an id as in events: {ID_RULE}",
}
_NUM: Final = {"type": "number"}
_NULL_NUM: Final = {"type": ["number", "null"]}
_STR: Final = {"type": "string"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": ID_SCHEMA,
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    """The error answers of an operation: ``codes`` and the access refusals every route has
    (streams/http/guard.py)."""
    texts = {
        400: "bad request: the message says which parameter or field is wrong",
        401: "no API key, or an unknown one (with WWW-Authenticate)",
        403: "the key's role, or its merchant, may not use this route",
        404: "unknown route",
        413: "request body too large",
        429: "past the key's rate: retry after Retry-After seconds",
        500: "internal error (no details are exposed)",
        503: "too many expensive requests at once on this worker: retry after Retry-After",
    }
    return {str(c): _json(_ref("Error"), texts[c]) for c in sorted({401, 403, 429, *codes})}


def _schemas() -> dict[str, Any]:
    """The response bodies' JSON schemas, as data (long on purpose, like :func:`openapi_spec`)."""
    reason = {
        "type": "object",
        "description": "What added to a score: one of the user's items, a person and their "
        "action, or a kind of match.",
        "properties": {
            "item_id": _STR,
            "user_id": _STR,
            "action": _STR,
            "contribution": _NUM,
        },
    }
    trending_item = _obj(
        ["item_id", "count", "velocity", "events"],
        item_id=_STR,
        count=_NUM,
        velocity={"type": "number", "description": "weighted events per second vs last window"},
        events={"type": "integer"},
    )
    return {
        "Error": _obj(["error"], error=_STR),
        "Reason": reason,
        "RecommendedItem": _obj(
            ["item_id", "score", "source", "reasons", "sources"],
            item_id=_STR,
            score=_NUM,
            source=_STR,
            reasons={"type": "array", "items": _ref("Reason")},
            sources={"type": "object", "additionalProperties": _NUM},
        ),
        "Recommendations": _obj(
            ["user_id", "items", "cold_start", "generated_at", "model_version", "served_from"],
            user_id=_STR,
            items={"type": "array", "items": _ref("RecommendedItem")},
            cold_start={"type": "boolean"},
            trigger={
                "type": ["object", "null"],
                "description": "the event that triggered the published list (null if computed)",
            },
            generated_at=_NUM,
            model_version=_STR,
            served_from={
                "enum": ["published", "computed"],
                "description": "`published`: the list last sent on the recommendations topic; "
                "`computed`: ranked now for a user with no published list (cold start)",
            },
        ),
        "TrendingItem": trending_item,
        "Trending": _obj(
            ["scope", "window_s", "items", "as_of", "newest_event_at", "freshness_s"],
            scope=_STR,
            window_s=_NUM,
            items={"type": "array", "items": _ref("TrendingItem")},
            as_of=_NUM,
            newest_event_at=_NULL_NUM,
            freshness_s=_NULL_NUM,
        ),
        "Why": _obj(
            ["user_id", "item_id", "status", "detail", "exclusions", "sources", "reasons"],
            user_id=_STR,
            item_id=_STR,
            status={
                "enum": ["recommended", "excluded", "not_a_candidate", "below_cut", "not_shown"]
            },
            detail=_STR,
            exclusions={
                "type": "array",
                "items": {"enum": ["bought", "hidden", "excluded", "seen"]},
            },
            position={"type": ["integer", "null"]},
            score=_NULL_NUM,
            cut_score=_NULL_NUM,
            sources={"type": "object", "additionalProperties": _NUM},
            reasons={"type": "array", "items": _ref("Reason")},
        ),
        "Merchant": _obj(
            ["merchant_id", "window_s", "funnel", "exposure", "rising"],
            merchant_id=_STR,
            window_s=_NUM,
            funnel=_obj(
                ["counts", "rates"],
                counts={"type": "object", "additionalProperties": {"type": "integer"}},
                rates=_obj(
                    ["view_to_cart", "cart_to_purchase", "view_to_purchase"],
                    view_to_cart=_NULL_NUM,
                    cart_to_purchase=_NULL_NUM,
                    view_to_purchase=_NULL_NUM,
                ),
            ),
            exposure=_obj(
                ["slots", "total_slots", "share"],
                slots={"type": "integer"},
                total_slots={"type": "integer"},
                share=_NULL_NUM,
            ),
            rising={"type": "array", "items": _ref("TrendingItem")},
        ),
        "QueryRequest": {
            "type": "object",
            "required": ["text"],
            "additionalProperties": False,
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS},
                "user_id": {**ID_SCHEMA, "type": ["string", "integer"]},
                "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10},
            },
        },
        "QueryResult": _obj(
            ["item_id", "title", "score", "relevance", "reasons"],
            item_id=_STR,
            title=_STR,
            score=_NUM,
            relevance=_NUM,
            reasons={
                "type": "array",
                "items": _obj(
                    ["type"],
                    type={"enum": ["matched", "profile_match", "trending", "social_proof"]},
                    terms={"type": "array", "items": _STR},
                    lift=_NUM,
                    actions={"type": "array", "items": _STR},
                ),
            },
        ),
        "QueryResponse": _obj(
            ["text", "terms", "personalised", "results"],
            text=_STR,
            terms={
                "type": "array",
                "items": _obj(["text", "concept"], text=_STR, concept=_STR),
            },
            personalised={"type": "boolean"},
            results={"type": "array", "items": _ref("QueryResult")},
        ),
    }


def openapi_spec() -> dict[str, Any]:
    """The whole document (a new dict each call). Long on purpose: the routes as data, in the
    order the README lists them, with no logic to split."""
    user = _path_param("user_id", "the shopper's id, as in events")
    paths: dict[str, Any] = {
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This description",
                "responses": {"200": {"description": "the OpenAPI document"}, **_errors(500)},
            }
        },
        "/api/v1/users/{user_id}/recommendations": {
            "get": {
                "operationId": "recommendations",
                "summary": "The user's latest recommendations, with reasons",
                "description": "The list last published on the `recommendations` topic; a user "
                "without one (unknown, or quiet for a week) gets a list ranked now (cold start "
                "for an unknown user), which is not published.",
                "parameters": [user],
                "responses": {
                    "200": _json(_ref("Recommendations"), "the list"),
                    **_errors(400, 500),
                },
            }
        },
        "/api/v1/users/{user_id}/why/{item_id}": {
            "get": {
                "operationId": "why",
                "summary": "Why an item is or is not recommended to the user",
                "description": "`recommended` (position, sources, reasons from the published "
                "list), `excluded` (bought, hidden, excluded by configuration, seen), "
                "`not_a_candidate` (no source proposes it), `below_cut` (its rank and score "
                "against the last shown candidate's) or `not_shown` (ranked high enough but "
                "displaced by the category cap or the exploration slot, or the state changed).",
                "parameters": [user, _path_param("item_id", "the item")],
                "responses": {
                    "200": _json(_ref("Why"), "the explanation"),
                    **_errors(400, 500, 503),
                },
            }
        },
        "/api/v1/trending/{scope}": {
            "get": {
                "operationId": "trending",
                "summary": "What is trending in a scope right now",
                "parameters": [
                    {
                        "name": "scope",
                        "in": "path",
                        "required": True,
                        "description": "`global`, `category:<category>`, `merchant:<id>` or "
                        "`stream:<stream id>`",
                        "schema": {"type": "string", "maxLength": len("category:") + MAX_ID_LENGTH},
                    },
                    {
                        "name": "k",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_TRENDING_K,
                            "default": 20,
                        },
                    },
                ],
                "responses": {
                    "200": _json(_ref("Trending"), "the scope's top items"),
                    **_errors(400, 500),
                },
            }
        },
        "/api/v1/merchants/{merchant_id}": {
            "get": {
                "operationId": "merchant",
                "summary": "A merchant's live funnel, rising items and recommendation exposure",
                "description": "Counts of the merchant's item events over the window (buckets "
                "of 60 s, so up to one bucket more), view → cart → purchase conversion (null "
                "when the denominator is 0; can exceed 1 when carts come without a tracked "
                "view), the merchant's items trending fastest, and their share of all "
                "published recommendation slots in the window.",
                "parameters": [
                    _path_param("merchant_id", "the merchant, as in catalog records"),
                    {
                        "name": "window_s",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": MIN_WINDOW_S,
                            "maximum": MAX_WINDOW_S,
                            "default": DEFAULT_WINDOW_S,
                        },
                    },
                ],
                "responses": {
                    "200": _json(_ref("Merchant"), "the figures"),
                    **_errors(400, 500, 503),
                },
            }
        },
        "/api/v1/query": {
            "post": {
                "operationId": "query",
                "summary": "Natural-language product search (English and Chinese)",
                "description": "Stop words dropped, Chinese segmented (jieba), plurals "
                "stripped, a small synonym table (smartphone = phone = 手机 = 智能手机). Matches "
                "are ranked by how much of the query they match, then re-ranked for `user_id` "
                "by their content profile, trending and social proof; each result says why.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("QueryRequest")}},
                },
                "responses": {
                    "200": _json(_ref("QueryResponse"), "matching items, best first"),
                    **_errors(400, 413, 500),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "socialrec API",
            "version": "1.0.0",
            "description": "Read API of the socialrec worker. Every error is JSON "
            '`{"error": "..."}`; unknown routes under /api/ answer 404. Every route needs an '
            "API key (`Authorization: Bearer <key>`) whose role may use it: frontend "
            "(recommendations, trending, query), merchant (its own merchant's figures), "
            "operator (everything, /why only to it). Requests count against the key's rate, "
            "the expensive ones (/why, long merchant windows) for more than one.",
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
