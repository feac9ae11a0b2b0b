"""Live quality and fairness windows (models/live_quality.py) and how the pipeline feeds them."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.evaluation import gini, long_tail_share, short_head
from models.live_quality import ExposureWindow, LastLists, LiveQuality, SlidingHitRate
from models.state import StateParams
from streams.config import Settings
from streams.metrics import STAGES, WorkerMetrics
from streams.pipeline import BatchProcessor, InboundRecord
from streams.runtime.privacy import ErasureProcessor
from streams.store import MemoryStore
from tests.unit.fakes import RecordingPublisher

NOW = 1_800_000_000.0
items = st.sampled_from([f"i{n}" for n in range(12)])
lists = st.lists(st.lists(items, max_size=5, unique=True), max_size=40)


@given(lists, st.integers(min_value=1, max_value=10))
def test_sliding_exposure_equals_a_recount_of_the_last_lists(
    published: list[list[str]], window: int
) -> None:
    exposure = ExposureWindow(window)
    for shown in published:
        exposure.add(shown)
    counts: dict[str, int] = {}
    for shown in published[-window:]:
        for item in shown:
            counts[item] = counts.get(item, 0) + 1
    assert exposure.exposure() == counts
    assert exposure.gini() == round(gini(counts.values()), 4)
    assert exposure.long_tail_share() == round(long_tail_share(counts, short_head(counts)), 4)
    assert exposure.coverage(known_items=12) == round(len(counts) / 12, 4)
    assert 0.0 <= exposure.gini() <= 1.0


def test_gini_and_long_tail_move_the_right_way() -> None:
    even, skewed = ExposureWindow(100), ExposureWindow(100)
    for n in range(50):
        even.add([f"i{n % 10}"])
        skewed.add(["hit"] if n % 10 else [f"i{n}"])
    assert even.gini() == 0.0
    assert skewed.gini() > 0.5
    assert even.long_tail_share() == 0.8  # the head is 2 of 10 equally shown items
    # 6 items shown: the head is "hit" and one one-off (2 = ceil(20 % of 6)); 4 of 50 slots left.
    assert skewed.long_tail_share() == 0.08


@given(st.lists(st.booleans(), max_size=60), st.integers(min_value=1, max_value=15))
def test_sliding_hit_rate_equals_a_recount(outcomes: list[bool], window: int) -> None:
    rate = SlidingHitRate(window)
    for hit in outcomes:
        rate.record(hit)
    last = outcomes[-window:]
    assert (rate.hits, rate.requests) == (sum(last), len(last))
    assert rate.value() == (sum(last) / len(last) if last else 0.0)


@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=40))
def test_last_lists_stay_bounded_and_keep_the_most_recent_users(users: list[str]) -> None:
    lru = LastLists(capacity=3)
    for n, user in enumerate(users):
        lru.remember(user, [f"i{n}"])
    assert len(lru) <= 3
    recent: list[str] = []
    for user in reversed(users):
        if user not in recent:
            recent.append(user)
    assert {u for u in "abcde" if u in lru} == set(recent[:3])


@pytest.mark.parametrize("bad", [0, -1])
def test_windows_refuse_a_size_below_one(bad: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SlidingHitRate(bad)
    with pytest.raises(ValueError, match="at least 1"):
        LastLists(bad)


def _record(n: int, user: str, item: str, kind: str = "view") -> InboundRecord:
    body = {"event_id": f"e{n}", "type": kind, "user_id": user, "item_id": item, "ts": NOW - 5}
    return InboundRecord(orjson.dumps(body), user.encode(), "events", 0, n, NOW - 0.01)


def _sample(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_pipeline_scores_requests_against_the_last_list_and_erasure_forgets_it() -> None:
    store = MemoryStore(StateParams())
    publisher, metrics = RecordingPublisher(), WorkerMetrics()
    processor = BatchProcessor(Settings(), store, publisher, metrics, clock=lambda: NOW)
    await processor.process([_record(1, "bob", "a"), _record(2, "bob", "b")])
    await processor.process([_record(3, "ann", "a")])  # no list for ann yet: not a request
    assert _sample(metrics, "socialrec_live_requests_total") == 0
    last = orjson.loads(publisher.on("recommendations")[-1].value or b"")
    assert "b" in [item["item_id"] for item in last["items"]]

    await processor.process([_record(4, "ann", "b", "cart")])  # b was shown to ann: a hit
    await processor.process([_record(5, "ann", "zzz")])  # not shown: a miss
    assert _sample(metrics, "socialrec_live_requests_total") == 2
    assert _sample(metrics, "socialrec_live_hits_total") == 1
    assert _sample(metrics, "socialrec_live_hit_rate") == 0.5
    assert _sample(metrics, "socialrec_exposure_gini") >= 0.0
    assert 0.0 < _sample(metrics, "socialrec_catalog_coverage_ratio") <= 1.0
    assert _sample(metrics, "socialrec_known_items") == 3  # a, b, zzz

    erasures = ErasureProcessor(Settings(), store, publisher, metrics, forget=processor.forget)
    request = {"request_id": "r1", "type": "erase", "user_id": "ann"}
    await erasures.process([InboundRecord(orjson.dumps(request), b"ann", "p", 0, 0, NOW)])
    assert "ann" not in processor.live.last
    await processor.process([_record(6, "ann", "b")])  # nothing remembered: not a request
    assert _sample(metrics, "socialrec_live_requests_total") == 2


async def test_every_stage_is_timed_once_per_batch() -> None:
    publisher, metrics = RecordingPublisher(), WorkerMetrics()
    processor = BatchProcessor(
        Settings(), MemoryStore(StateParams()), publisher, metrics, clock=lambda: NOW
    )
    for n in range(3):
        await processor.process([_record(n, "ann", f"i{n}")])
    counts = {s: _sample(metrics, "socialrec_stage_seconds_count", stage=s) for s in STAGES}
    # No sources configured here, so those stages never run; every other runs once per batch.
    assert counts == {
        "validate": 3,
        "state": 3,
        "learn": 0,
        "sources": 0,
        "assembly": 3,
        "publish": 3,
    }
    assert _sample(metrics, "socialrec_stage_seconds_sum", stage="state") > 0


def test_live_quality_counts_only_users_with_a_remembered_list() -> None:
    live = LiveQuality(users=1, requests=10, lists=10)
    live.published("ann", ["a"])
    live.published("bob", ["b"])  # pushes ann out (capacity 1)
    assert live.request("ann", "a") is None
    assert live.request("bob", "b") is True
