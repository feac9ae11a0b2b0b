"""The catalog and privacy topics held to the events' standard: the key, the id rule, a size
limit, and a failing batch that is isolated and dead-lettered instead of retried for ever."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest
import redis.exceptions

from streams.metrics import WorkerMetrics
from streams.pipeline import InboundRecord
from streams.runtime.catalog import MAX_CATALOG_BYTES, parse_catalog
from streams.runtime.outage import isolating
from streams.runtime.privacy import MAX_REQUEST_BYTES, ErasureRequest, parse_request


def _catalog(body: dict[str, object], key: bytes | None = b"i1") -> InboundRecord:
    return InboundRecord(orjson.dumps(body), key, "catalog", 0, 0, 0.0)


@pytest.mark.parametrize(
    ("body", "key", "reason"),
    [
        ({"item_id": "i1"}, b"i2", "key_mismatch"),
        ({"item_id": "i1"}, None, "key_mismatch"),
        ({"item_id": 7}, b"7", None),  # numeric ids, as in events
        ({"title": "no id"}, b"i1", "missing_field"),
        ({"item_id": "i\t1"}, b"i\t1", "bad_field"),
        ({"item_id": "i1", "category": "a\tb"}, b"i1", "bad_field"),
        ({"item_id": "i1", "merchant_id": "m" * 129}, b"i1", "bad_field"),
        ({"item_id": "i1", "tags": ["ok", "a\nb"]}, b"i1", "bad_field"),
        ({"item_id": "i1", "title": "x" * MAX_CATALOG_BYTES}, b"i1", "oversized"),
        ({"item_id": "i1", "title": "tab\tand newline\n are fine in a title"}, b"i1", None),
    ],
)
def test_catalog_records_follow_the_key_and_the_id_rule(
    body: dict[str, object], key: bytes | None, reason: str | None
) -> None:
    parsed = parse_catalog(_catalog(body, key))
    assert (parsed[0] if isinstance(parsed, tuple) else None) == reason


@pytest.mark.parametrize("key", [None, b"", b"\xff\xfe", b"a\x00", b"x" * 129])
def test_a_tombstone_must_name_a_valid_item(key: bytes | None) -> None:
    parsed = parse_catalog(InboundRecord(None, key, "catalog", 0, 0, 0.0))
    assert isinstance(parsed, tuple)


def test_an_erasure_request_is_honoured_whatever_its_key_but_not_whatever_its_size() -> None:
    small = orjson.dumps({"request_id": "r1", "type": "erase", "user_id": "u\u200f🛍"})
    assert parse_request(small) == ErasureRequest("r1", "u\u200f🛍")
    padded = orjson.dumps({"request_id": "r1", "type": "erase", "user_id": "u1", "pad": "x" * 5000})
    assert len(padded) > MAX_REQUEST_BYTES
    assert parse_request(padded) == "oversized"
    assert parse_request(orjson.dumps({"request_id": "r", "type": "erase", "user_id": "a\tb"})) == (
        "bad_field"
    )


async def test_a_record_that_fails_alone_is_dead_lettered_and_the_rest_done() -> None:
    done: list[int] = []
    dead: list[int] = []
    outages = iter([redis.exceptions.ConnectionError("refused")])

    async def step(records: Sequence[int]) -> None:
        error = next(outages, None)
        if error is not None:
            raise error  # waited out: the same batch again, nothing dead-lettered
        if 13 in records:
            raise ValueError("poison")
        done.extend(records)

    async def dead_letter(records: Sequence[int]) -> None:
        dead.extend(records)

    await isolating(step, list(range(40)), WorkerMetrics(), "test batch", dead_letter)
    assert dead == [13]
    assert sorted(done) == [n for n in range(40) if n != 13]
