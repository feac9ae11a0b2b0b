"""Every input topic under 10,000 hostile records each (tests/fuzz/): each validator
gives the answer the generator expects and never raises, and each consumer dead-letters
every rejected record with its reason and applies every valid one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

import pytest

from models.content import CatalogRecord, item_features
from models.events import Event, Rejection, is_valid_id, parse_event
from models.state import StateParams
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import BatchProcessor, InboundRecord, validate_record
from streams.runtime.catalog import CatalogIngester, parse_catalog
from streams.runtime.privacy import ErasureProcessor, ErasureRequest, parse_request
from streams.store import MemoryStore
from tests.fuzz.records import Case
from tests.fuzz.topics import Fuzzer
from tests.unit.fakes import RecordingPublisher, SentRecord

NOW = 1_800_000_000.0
CASES = 10_000
SETTINGS = Settings()
BATCH = 200


def _cases(topic: str, seed: int = 12) -> Iterator[tuple[int, Case, InboundRecord]]:
    fuzzer = Fuzzer(seed, NOW)
    make = {
        "events": lambda: fuzzer.event(SETTINGS.max_event_bytes),
        "catalog": fuzzer.catalog,
        "privacy.requests": fuzzer.privacy,
    }[topic]
    for n in range(CASES):
        case = make()
        yield n, case, InboundRecord(case.value, case.key, topic, n % 3, n, NOW - 1)


def _judged(reason: str, detail: str, case: Case, n: int) -> None:
    """A rejection the generator expected, whose detail names fields, never values."""
    assert case.reasons, f"case {n} ({case.what}) is valid but was refused: {reason} {detail}"
    assert reason in case.reasons, f"case {n} ({case.what}): {reason}, not {case.reasons}"
    assert detail.isascii(), f"case {n}: a value leaked into the detail"


def _dead_letters(sent: list[SentRecord]) -> Counter[tuple[bytes | None, bytes]]:
    return Counter((d.value, d.headers["socialrec.dlq.reason"]) for d in sent)


def test_events_are_classified_as_generated() -> None:
    for n, case, record in _cases("events"):
        checked = validate_record(SETTINGS, record, NOW)
        if isinstance(checked, Rejection):
            _judged(checked.reason, checked.detail, case, n)
            continue
        assert not case.reasons, f"case {n} ({case.what}) accepted, expected {case.reasons}"
        assert record.key == checked.user_id.encode()
        assert parse_event(checked.to_json(), now=NOW) == checked  # the wire form round-trips
        ids = (checked.event_id, checked.user_id, checked.item_id, checked.stream_id)
        assert all(is_valid_id(i) for i in ids if i is not None)


def test_catalog_records_are_classified_as_generated() -> None:
    for n, case, record in _cases("catalog"):
        parsed = parse_catalog(record)
        if isinstance(parsed, tuple):
            _judged(*parsed, case, n)
            continue
        assert not case.reasons, f"case {n} ({case.what}) accepted, expected {case.reasons}"
        if isinstance(parsed, CatalogRecord):
            assert record.key == parsed.item_id.encode()
            item_features(parsed)  # what the content source makes of it never raises either
        else:
            assert record.key == parsed.encode()


def test_erasure_requests_are_classified_as_generated() -> None:
    for n, case, record in _cases("privacy.requests"):
        parsed = parse_request(record.value)
        if isinstance(parsed, str):
            _judged(parsed, "", case, n)
            continue
        assert not case.reasons, f"case {n} ({case.what}) accepted, expected {case.reasons}"
        assert is_valid_id(parsed.user_id)
        assert is_valid_id(parsed.request_id)


def _expected_dead(records: list[tuple[Case, InboundRecord]]) -> Counter[bytes | None]:
    return Counter(r.value for c, r in records if c.reasons)


@pytest.mark.parametrize("topic", ["events", "catalog", "privacy.requests"])
async def test_each_consumer_dead_letters_the_rejected_and_applies_the_valid(topic: str) -> None:
    store = MemoryStore(StateParams())
    publisher, metrics = RecordingPublisher(), WorkerMetrics()
    processor = BatchProcessor(SETTINGS, store, publisher, metrics, clock=lambda: NOW)
    steps: dict[str, Callable[[list[InboundRecord]], Awaitable[object]]] = {
        "events": processor.process,
        "catalog": CatalogIngester(SETTINGS, store, publisher, metrics).process,
        "privacy.requests": ErasureProcessor(SETTINGS, store, publisher, metrics).process,
    }
    step = steps[topic]
    records = [(case, record) for _, case, record in _cases(topic, seed=34)]
    for start in range(0, len(records), BATCH):
        await step([record for _, record in records[start : start + BATCH]])

    dead = publisher.on("events.dlq")
    assert Counter(d.value for d in dead) == _expected_dead(records)
    for d in dead:
        assert d.headers["__connect.errors.topic"] == topic.encode()
        assert (
            d.headers["socialrec.dlq.reason"] == d.headers["__connect.errors.exception.class.name"]
        )
    valid = [record for case, record in records if not case.reasons]
    if topic == "events":
        users = {
            e.user_id for r in valid if isinstance(e := validate_record(SETTINGS, r, NOW), Event)
        }
        assert users <= set(store.state.users)  # each valid event reached its user's state
    elif topic == "catalog":
        assert metrics.catalog_items._value.get() > 0
    else:
        receipts = publisher.on("privacy.receipts")
        erased = [parse_request(r.value) for r in valid]
        assert len(receipts) == len(erased)
        assert all(isinstance(e, ErasureRequest) for e in erased)
