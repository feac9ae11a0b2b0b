"""The worker's learnt blend (streams/runtime/knobs.py) through the pipeline on the in-memory store:
it learns from each list and the next item, is saved and restored, and forgets erased users."""

from __future__ import annotations

import asyncio
import gc
import itertools
from typing import Any, cast

import orjson
import redis.exceptions

from models.cooccurrence import Cooccurrence
from models.recommend import DEFAULT_SOURCE_WEIGHTS, Reason, Source, blend_pools
from models.recommend.candidates import Pool
from models.state import StateParams
from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.pipeline import BatchProcessor, InboundRecord
from streams.runtime.knobs import WorkerKnobs
from streams.runtime.learner_state import LearnerProgress, LearnerState
from streams.sources import SourceSet
from streams.store import MemoryStore
from tests.unit.fakes import RecordingPublisher
from tests.unit.reference import MemoryItemCF

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def _store() -> tuple[MemoryStore, Cooccurrence]:
    cf = Cooccurrence(StateParams())
    return MemoryStore(StateParams(), similar=cf.neighbours), cf


def _processor(
    store: MemoryStore, cf: Cooccurrence, clock: Clock, **settings: object
) -> BatchProcessor:
    metrics = WorkerMetrics()
    return BatchProcessor(
        Settings(learn_blend_persist_s=10.0, **settings),  # type: ignore[arg-type]
        store,
        RecordingPublisher(),
        metrics,
        clock=clock,
        retry_backoff_s=(0.0,),
        sources=SourceSet([MemoryItemCF(cf)], metrics),
    )


_offsets = itertools.count()


async def _batch(processor: BatchProcessor, *events: dict[str, object]) -> None:
    records = [
        InboundRecord(orjson.dumps(e), str(e["user_id"]).encode(), "events", 0, next(_offsets), NOW)
        for e in events
    ]
    await processor.process(records)


def _event(user: str, kind: str, *, item: str = "", target: str = "") -> dict[str, object]:
    body: dict[str, object] = {
        "event_id": f"e{next(_offsets)}",
        "type": kind,
        "user_id": user,
        "ts": NOW - 5,
    }
    body.update({"item_id": item} if item else {"target_user_id": target})
    return body


async def _stream_where_item_cf_is_best(processor: BatchProcessor, users: int) -> None:
    """Everyone views ``a`` then ``b`` (item-CF's pick after ``a``) and follows a user who
    likes other things (social proof's picks): what users act on next is item-CF's."""
    seeds = [_event(f"s{n}", "view", item=i) for n in range(5) for i in ("a", "b")]
    loud = [_event("loud", "like", item=f"n{n}") for n in range(5)]
    await _batch(processor, *seeds, *loud)
    for n in range(users):
        await _batch(processor, _event(f"u{n}", "follow", target="loud"))
        await _batch(processor, _event(f"u{n}", "view", item="a"))
        await _batch(processor, _event(f"u{n}", "view", item="b"))


async def test_the_blend_learns_from_the_next_item_and_the_lists_use_it() -> None:
    (store, cf), clock = _store(), Clock()
    processor = _processor(store, cf, clock)
    configured = dict(processor.params.source_weights)
    assert DEFAULT_SOURCE_WEIGHTS.items() <= configured.items()  # and the rest start low
    await _stream_where_item_cf_is_best(processor, users=60)
    assert processor.knobs is not None
    weights = processor.knobs.weights
    assert processor.knobs.learner.observations >= 50
    assert weights[Source.ITEM_CF] == 1.0
    assert weights[Source.SOCIAL] < 0.5 * configured[Source.SOCIAL]
    assert dict(processor.params.source_weights) == weights  # the next lists' blend
    assert store.knobs is None  # not saved before learn_blend_persist_s

    clock.now += 10.0
    await _batch(processor, _event("tick", "view", item="a"))
    assert store.knobs is not None
    gauge = processor.metrics.registry.get_sample_value
    assert gauge("socialrec_blend_weight", {"source": "social"}) == weights[Source.SOCIAL]
    assert b"u1" not in store.knobs  # per-source figures only

    # A restarted worker continues from the saved blend before its first list.
    again = _processor(store, cf, clock)
    await _batch(again, _event("tock", "view", item="a"))
    assert again.knobs is not None
    assert again.knobs.learner.observations >= processor.knobs.learner.observations - 1
    assert again.knobs.weights[Source.SOCIAL] < 0.5 * configured[Source.SOCIAL]


class FlakyKnobStore(MemoryStore):
    """Saving the blend first meets an outage, then a bug's error, then works."""

    def __init__(self, similar: Any) -> None:
        super().__init__(StateParams(), similar=similar)
        self.failures: list[Exception] = [
            redis.exceptions.ConnectionError("refused"),
            redis.exceptions.ResponseError("WRONGTYPE Operation against a key"),
        ]

    async def save_knobs(self, body: bytes) -> None:
        if self.failures:
            raise self.failures.pop(0)
        await super().save_knobs(body)


async def test_saving_the_blend_waits_an_outage_out_and_a_failure_loses_no_batch() -> None:
    cf, clock = Cooccurrence(StateParams()), Clock()
    store = FlakyKnobStore(cf.neighbours)
    processor = _processor(store, cf, clock)
    await _stream_where_item_cf_is_best(processor, users=3)
    clock.now += 10.0
    await _batch(processor, _event("tick", "view", item="a"))  # outage waited out, then the bug
    assert store.failures == []
    assert store.knobs is None
    publisher = cast(RecordingPublisher, processor.publisher)
    assert publisher.on("events.dlq") == []
    assert publisher.on("recommendations")[-1].key == b"tick"
    clock.now += 10.0
    await _batch(processor, _event("tock", "view", item="a"))
    assert store.knobs is not None


async def test_erasure_forgets_the_users_remembered_candidates() -> None:
    processor = _processor(*_store(), Clock())
    await _batch(processor, _event("ann", "view", item="a"), _event("bob", "view", item="a"))
    assert processor.knobs is not None
    assert processor.knobs.remembered() == 2
    processor.forget(["ann"])
    assert processor.knobs.remembered() == 1
    assert not processor.knobs.acted("ann", "b")  # nothing left to learn from


async def test_learning_off_keeps_the_configured_blend() -> None:
    processor = _processor(*_store(), Clock(), learn_blend=False)
    await _stream_where_item_cf_is_best(processor, users=5)
    assert processor.knobs is None
    assert dict(processor.params.source_weights) == DEFAULT_SOURCE_WEIGHTS


class _Learnt:
    """The learner's progress as LearnerState reads it, with a learned half-life."""

    async def progress(self) -> LearnerProgress:
        return LearnerProgress(event_ts=0.0, refresh_s=None, half_life_s=7200.0)


async def test_the_api_follows_the_blend_the_workers_save_and_the_learned_half_life() -> None:
    """``socialrec api`` learns nothing: it ranks with the blend the workers last saved, and
    decays social proof by the half-life the learner learnt."""
    from streams.http.serving import follow_knobs

    (store, cf), clock = _store(), Clock()
    worker = _processor(store, cf, clock)
    await _stream_where_item_cf_is_best(worker, users=60)
    clock.now += 10.0
    await _batch(worker, _event("tick", "view", item="a"))
    assert worker.knobs is not None
    api = _processor(store, cf, clock)
    assert dict(api.params.source_weights) != worker.knobs.weights
    read, load = asyncio.Event(), store.load_knobs

    async def load_and_tell() -> bytes | None:
        try:
            return await load()
        finally:
            read.set()

    store.load_knobs = load_and_tell  # type: ignore[method-assign]
    stop = asyncio.Event()
    assert api.params.social_half_life_s != 7200.0
    learnt = cast(LearnerState, _Learnt())
    following = asyncio.create_task(follow_knobs(api, learnt, api.settings, stop))
    await asyncio.wait_for(read.wait(), 10.0)
    stop.set()
    await following  # its reads applied
    assert dict(api.params.source_weights) == worker.knobs.weights
    assert api.params.social_half_life_s == 7200.0


async def test_with_a_learnt_blend_lists_take_the_learners_popular_items_as_a_source() -> None:
    """The learner's popularity (its half-life, its items) replaces the state's popular items
    and is a source the blend weighs, as in eval; without a learnt blend nothing changes."""
    from models.state import PopularView

    learnt = PopularView((("p1", 4.0), ("p2", 2.0), ("a", 9.0)), NOW - 10)
    progress = LearnerProgress(event_ts=NOW, refresh_s=None, half_life_s=7200.0, popular=learnt)
    for learn_blend in (True, False):
        (store, cf), clock = _store(), Clock()
        processor = _processor(store, cf, clock, learn_blend=learn_blend)
        processor.follow_learner(progress)
        await _batch(processor, _event("ann", "view", item="a"))
        publisher = cast(RecordingPublisher, processor.publisher)
        body = orjson.loads(publisher.sent[-1].value or b"")
        shown = {(r["item_id"], r["source"]) for r in body["items"]}
        if learn_blend:
            assert processor.params.half_life_s == 7200.0
            assert {("p1", "popular"), ("p2", "popular")} <= shown  # "a" she has seen
        else:
            assert processor.learnt_popular is None
            assert not {item for item, _ in shown} & {"p1", "p2"}


def _tracked(root: object) -> int:
    """Objects the cyclic collector tracks among the containers reachable from ``root``."""
    seen: set[int] = set()
    stack, count = [root], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or type(obj).__name__ not in {
            "Blended",
            "Reason",
            "Scores",
            "dict",
            "list",
            "tuple",
        }:
            continue
        seen.add(id(obj))
        count += gc.is_tracked(obj)
        stack.extend(gc.get_referents(obj))
    return count


def test_what_the_blend_learner_keeps_of_a_list_is_a_few_objects_the_collector_walks() -> None:
    """Each kept list costs the collector a walk over what is kept: with the reasons of 150
    candidates that was some 200 objects a user, 2 million for 10,000 users and full passes of
    1-2 s (docs/live-path.md); as (score, ()) pairs, 100 objects each young pass walked once.
    Dicts of floats are never tracked at all, and still teach."""
    shared = (Reason(None, 1.0, action="taste"),)
    pools: dict[Source, Pool] = {
        Source.ITEM_CF: {f"c{n}": (1.0 + n, [(0.5, "x"), (0.5 + n, "y")]) for n in range(50)},
        Source.MF: {f"m{n}": (0.1 * n, shared) for n in range(50)},
    }
    blended = blend_pools(pools, DEFAULT_SOURCE_WEIGHTS)
    knobs = WorkerKnobs(dict(DEFAULT_SOURCE_WEIGHTS), half_life_s=3600.0, users=10)
    knobs.shown("ann", blended)
    kept = knobs.lesson("ann")
    assert kept is not None
    assert _tracked(kept) <= 4  # before any collection: nothing for a young pass either
    gc.collect()
    assert _tracked(blended) > 150  # the list as ranked, with its reasons
    assert kept.totals == blended.totals
    assert kept.best == blended.best
    assert knobs.learn(kept, "m30")
