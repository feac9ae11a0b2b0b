"""What every HTTP route accepts, and the one form of its refusals.

The API (streams/http/api.py), the live pages (streams/http/live/) and the guard
(streams/http/guard.py) read paths, query strings and bodies through these functions, so an id is
held to the same rule as in events (:func:`models.events.is_valid_id`: a user id events accept can
be read, asked about and erased), a number is parsed the same way by the guard that prices a request
and by the handler that answers it, and every refusal is JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web as aioweb

from models.events import ID_RULE, Rejection, id_field, is_valid_id
from models.trending import GLOBAL_SCOPE
from streams.http.api_spec import MAX_K, MAX_QUERY_CHARS

#: Scope kinds of the trending endpoint (besides ``global``).
SCOPE_KINDS = ("category", "merchant", "stream")

Json = dict[str, Any]


class ApiError(Exception):
    """A request a route refuses: the status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> aioweb.Response:
    return aioweb.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> aioweb.Response:
    return json_response({"error": message}, status, headers)


def route_pattern(template: str) -> str:
    """The pattern a route template is registered with: a path id is any text but '/'
    (aiohttp's own default also refuses '{' and '}', which ids may hold).

    >>> route_pattern("/api/v1/users/{user_id}/why/{item_id}")
    '/api/v1/users/{user_id:[^/]+}/why/{item_id:[^/]+}'
    """
    return re.sub(r"\{(\w+)\}", r"{\1:[^/]+}", template)


def path_segment(value: str) -> str:
    """``value`` as one URL path segment: percent-encoded, dots too (a segment ``.`` or ``..``
    would be read as a path step by clients and servers).

    >>> path_segment("a/b c"), path_segment("..")
    ('a%2Fb%20c', '%2E%2E')
    """
    return quote(value, safe="").replace(".", "%2E")


def check_id(value: str, what: str) -> str:
    """A path id, by the events' id rule.

    >>> check_id("u\\u200f🛍", "user_id")
    'u\\u200f🛍'
    >>> check_id("a\\tb", "user_id")
    Traceback (most recent call last):
    ...
    streams.http.http_input.ApiError: user_id must be 1 to 128 characters, none of them a control character
    """  # noqa: E501
    if not is_valid_id(value):
        raise ApiError(400, f"{what} must be {ID_RULE}")
    return value


def query_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``[low, high]`` (ASCII digits, an optional sign).

    >>> query_int({"k": "5"}, "k", 20, 1, 100), query_int({}, "k", 20, 1, 100)
    (5, 20)
    >>> query_int({"k": "²"}, "k", 20, 1, 100)
    Traceback (most recent call last):
    ...
    streams.http.http_input.ApiError: query parameter 'k' must be an integer from 1 to 100
    """
    raw = query.get(name)
    if raw is None:
        return default
    digits = raw.removeprefix("-")
    # int() alone takes '²'-like digits (and fails on them), '1_0', spaces and 5,000 digits.
    ok = digits.isascii() and digits.isdigit() and len(digits) <= 18
    if not ok or not low <= int(raw) <= high:
        raise ApiError(400, f"query parameter '{name}' must be an integer from {low} to {high}")
    return int(raw)


def check_scope(scope: str) -> str:
    """``global`` or ``<kind>:<id>`` with a known kind and an id by the id rule.

    >>> check_scope("category:phones")
    'category:phones'
    >>> check_scope("user:u1")
    Traceback (most recent call last):
    ...
    streams.http.http_input.ApiError: scope must be 'global' or category:, merchant:, stream: and an id of 1 to 128 characters, none of them a control character
    """  # noqa: E501
    kind, sep, rest = scope.partition(":")
    if scope == GLOBAL_SCOPE or (sep and kind in SCOPE_KINDS and is_valid_id(rest)):
        return scope
    raise ApiError(
        400, f"scope must be 'global' or category:, merchant:, stream: and an id of {ID_RULE}"
    )


def parse_query(raw: bytes) -> tuple[str, str | None, int]:
    """(text, user_id, k) of a query body, or the reason it is refused. ``user_id`` is an id
    as in events (a string, or an integer turned into text).

    >>> parse_query(b'{"text": "phone", "k": 3, "user_id": 42}')
    ('phone', '42', 3)
    >>> parse_query(b'{"text": ""}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.http.http_input.ApiError: field 'text' must be a non-empty string of at most 500 ...
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "body must be valid UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    unknown = sorted(set(body) - {"text", "user_id", "k"})
    if unknown:
        named = [name[:40] for name in unknown[:5]]  # the caller's own text, kept short
        raise ApiError(400, f"unknown fields {named}: allowed are text, user_id, k")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_QUERY_CHARS:
        raise ApiError(
            400,
            f"field 'text' must be a non-empty string of at most {MAX_QUERY_CHARS} characters",
        )
    user_id = id_field(body, "user_id", required=False)
    if isinstance(user_id, Rejection):
        raise ApiError(400, user_id.detail)
    k = body.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ApiError(400, f"field 'k' must be an integer from 1 to {MAX_K}")
    return text, user_id, k
