"""One id rule for every input: what an event accepts as an id, every other topic and every
HTTP route accepts, and nothing else (models/events.py :func:`is_valid_id`).

Each text is offered as an id everywhere at once, and every place must give the same verdict:
the events' user, item and stream ids, an erasure request's user, a catalog record's item
(and key), a path id of the API, a trending scope's id, the query's ``user_id``, a live
page's stream, and the OpenAPI document's schema of an id.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from models.events import Event, is_valid_id, parse_event
from streams.http.api_spec import ID_SCHEMA
from streams.http.http_input import ApiError, check_id, check_scope, parse_query
from streams.pipeline import InboundRecord
from streams.runtime.catalog import parse_catalog
from streams.runtime.privacy import ErasureRequest, parse_request
from tests.fuzz.ids import AWKWARD_IDS, BAD_IDS, ids

NOW = 1_800_000_000.0
#: Any text JSON can carry (no lone surrogate), control characters and all, around the limit.
texts = st.one_of(
    ids,
    st.text(st.characters(exclude_categories=["Cs"]), max_size=140),
    st.sampled_from((*AWKWARD_IDS, *BAD_IDS)),
)
SCHEMA = Draft202012Validator(ID_SCHEMA)


def _accepts(check: Any, *args: Any) -> bool:
    try:
        check(*args)
    except ApiError as exc:
        refusal = exc
    else:
        return True
    assert (refusal.status, "control character" in refusal.message) == (400, True)
    return False


def verdicts(text: str) -> dict[str, bool]:
    """Whether each input accepts ``text`` as an id."""
    event = {"event_id": "e1", "type": "view", "user_id": "u1", "item_id": "i1", "ts": NOW}
    catalog = orjson.dumps({"item_id": text, "title": "t"})
    erasure = orjson.dumps({"request_id": "r1", "type": "erase", "user_id": text})
    return {
        **{
            f"event {name}": isinstance(
                parse_event(orjson.dumps({**event, name: text}), now=NOW), Event
            )
            for name in ("event_id", "user_id", "item_id", "stream_id")
        },
        "erasure user_id": isinstance(parse_request(erasure), ErasureRequest),
        "catalog item_id": not isinstance(
            parse_catalog(InboundRecord(catalog, text.encode(), "catalog", 0, 0, NOW)), tuple
        ),
        "API path id": _accepts(check_id, text, "user_id"),
        "trending scope": _accepts(check_scope, f"stream:{text}"),
        "query user_id": _accepts(parse_query, orjson.dumps({"text": "x", "user_id": text})),
        "OpenAPI id schema": SCHEMA.is_valid(text),
    }


@settings(max_examples=3000, derandomize=True, deadline=None)
@given(texts)
def test_every_input_accepts_exactly_the_ids_events_accept(text: str) -> None:
    found = verdicts(text)
    expected = is_valid_id(text)
    assert found == dict.fromkeys(found, expected), (text, found)


def test_an_integer_id_is_its_text_everywhere_it_may_be_a_number() -> None:
    body = {"event_id": "e1", "type": "view", "user_id": 42, "item_id": 7, "ts": NOW}
    event = parse_event(orjson.dumps(body), now=NOW)
    assert isinstance(event, Event)
    assert (event.user_id, event.item_id) == ("42", "7")
    assert parse_request(orjson.dumps({"request_id": 1, "type": "erase", "user_id": 42})) == (
        ErasureRequest("1", "42")
    )
    assert parse_query(orjson.dumps({"text": "phone", "user_id": 42})) == ("phone", "42", 10)
