"""The synthetic world and its event stream (models.simulator), and the paced producer
(streams.tools.simulate) against an in-memory stand-in for the Kafka producer."""

from __future__ import annotations

import asyncio
import collections
import itertools
import statistics
import time
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError
from hypothesis import given, settings
from hypothesis import strategies as st

import streams.tools.simulate as simulate
from models.events import Event, EventType, parse_event
from models.simulator import (
    DEFAULT_START_TS,
    CatalogItem,
    World,
    generate_events,
    generate_world,
)
from streams.config import Settings

SEED = 7
COUNT = 30_000


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(SEED, users=500, items=2000)


@pytest.fixture(scope="module")
def stream(world: World) -> list[Event]:
    return list(generate_events(world, SEED, COUNT, start_ts=DEFAULT_START_TS, mean_gap_s=0.5))


def _wire(events: list[Event]) -> list[bytes]:
    return [e.to_json() for e in events]


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_identical_catalog_and_stream(world: World, stream: list[Event]) -> None:
    again = generate_world(SEED, users=500, items=2000)
    assert [i.to_json() for i in again.items] == [i.to_json() for i in world.items]
    assert again == world
    replay = list(generate_events(again, SEED, COUNT, start_ts=DEFAULT_START_TS, mean_gap_s=0.5))
    assert _wire(replay) == _wire(stream)


def test_different_seeds_differ(world: World, stream: list[Event]) -> None:
    other = generate_world(SEED + 1, users=500, items=2000)
    assert [i.to_json() for i in other.items] != [i.to_json() for i in world.items]
    assert other.following != world.following
    other_stream = list(generate_events(world, SEED + 1, 2000, start_ts=DEFAULT_START_TS))
    assert [(e.type, e.user_id, e.item_id) for e in other_stream] != [
        (e.type, e.user_id, e.item_id) for e in stream[:2000]
    ]


def test_clock_speed_only_scales_timestamps(world: World, stream: list[Event]) -> None:
    fast = list(generate_events(world, SEED, 3000, start_ts=DEFAULT_START_TS, mean_gap_s=0.01))
    slow = stream[:3000]
    assert [(e.event_id, e.type, e.user_id, e.item_id, e.target_user_id) for e in fast] == [
        (e.event_id, e.type, e.user_id, e.item_id, e.target_user_id) for e in slow
    ]
    assert fast[-1].ts - fast[0].ts == pytest.approx((slow[-1].ts - slow[0].ts) / 50, rel=0.01)


# --- well-formed stream -----------------------------------------------------------------------


def test_stream_is_ordered_unique_and_valid(stream: list[Event]) -> None:
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(stream))
    assert len({e.event_id for e in stream}) == len(stream)
    assert stream[0].event_id == f"sim-{SEED}-0"
    now = stream[-1].ts
    for event in stream:
        assert parse_event(event.to_json(), now=now) == event
    # The mean gap is what was asked for (Poisson arrivals, mean 0.5 s).
    assert (stream[-1].ts - stream[0].ts) / len(stream) == pytest.approx(0.5, rel=0.05)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**63),
    users=st.integers(min_value=2, max_value=60),
    items=st.integers(min_value=1, max_value=120),
    count=st.integers(min_value=0, max_value=400),
    gap=st.floats(min_value=0.0, max_value=30.0),
)
def test_any_seed_and_size_gives_a_valid_ordered_stream(
    seed: int, users: int, items: int, count: int, gap: float
) -> None:
    world = generate_world(seed, users=users, items=items)
    events = list(generate_events(world, seed, count, start_ts=DEFAULT_START_TS, mean_gap_s=gap))
    assert len(events) == count
    assert len({e.event_id for e in events}) == count
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(events))
    now = DEFAULT_START_TS + gap * count * 3 + 1
    for event in events:
        assert parse_event(event.to_json(), now=now) == event
        if event.item_id is not None:
            assert 0 <= int(event.item_id[1:]) < items


def test_id_prefix_replaces_the_default_ids(world: World) -> None:
    tagged = list(generate_events(world, SEED, 3, id_prefix="run9-"))
    assert [e.event_id for e in tagged] == ["run9-0", "run9-1", "run9-2"]


def test_unbounded_stream_runs_on(world: World) -> None:
    endless = generate_events(world, SEED, None)
    assert sum(1 for _, _ in zip(range(5000), endless, strict=False)) == 5000


def test_replay_graph_starts_with_the_initial_follows(world: World) -> None:
    edges = sum(len(f) for f in world.following)
    events = list(generate_events(world, SEED, edges + 100, replay_graph=True))
    head = events[:edges]
    assert all(e.type is EventType.FOLLOW for e in head)
    assert {(e.user_id, e.target_user_id) for e in head} == {
        (world.users[u].user_id, world.users[v].user_id)
        for u, fol in enumerate(world.following)
        for v in fol
    }


# --- the catalogue and the graph --------------------------------------------------------------


def test_catalogue_is_plausible(world: World) -> None:
    categories = {c.path for c in world.categories}
    assert len(categories) == 20
    merchants = {m.merchant_id: m for m in world.merchants}
    for item in world.items:
        body = orjson.loads(item.to_json())
        assert set(body) == {
            "item_id",
            "title",
            "category",
            "brand",
            "merchant_id",
            "price",
            "tags",
        }
        assert item.category in categories
        assert item.price > 0
        assert item.brand in item.title or not item.title.isascii()
        assert item.category in merchants[item.merchant_id].categories
    assert all(1 <= len(m.categories) <= 3 for m in world.merchants)
    chinese = [i.title for i in world.items if not i.title.isascii()]
    assert 0 < len(chinese) < len(world.items) / 4
    phones = [i.price for i in world.items if i.category == "electronics/phones"]
    cases = [i.price for i in world.items if i.category == "electronics/phone-cases"]
    assert statistics.median(phones) > 10 * statistics.median(cases)


def test_catalog_item_json_round_trips() -> None:
    item = CatalogItem("i1", "小米 智能手机", "electronics/phones", "Xiaomi", "m1", 299.99, ("5g",))
    assert orjson.loads(item.to_json())["tags"] == ["5g"]


def test_follow_graph_has_influencers(world: World) -> None:
    followers = collections.Counter(v for fol in world.following for v in fol)
    counts = sorted((followers[u] for u in range(len(world.users))), reverse=True)
    assert counts[0] >= 10 * max(1, statistics.median(counts))
    assert set(world.influencers) <= {u for u, n in followers.items() if n >= counts[9]}
    assert all(u not in fol for u, fol in enumerate(world.following))  # nobody follows self


# --- behaviour in the stream ------------------------------------------------------------------


def test_popularity_is_skewed(stream: list[Event], world: World) -> None:
    views = collections.Counter(e.item_id for e in stream if e.type is EventType.VIEW)
    ranked = sorted(views.values(), reverse=True)
    top = ranked[: len(world.items) // 10]
    assert sum(top) / sum(ranked) > 0.4


def test_funnel_rates_are_realistic(stream: list[Event]) -> None:
    kinds = collections.Counter(e.type for e in stream)
    views = kinds[EventType.VIEW]
    assert 0.05 < kinds[EventType.CART] / views < 0.12
    assert 0.015 < kinds[EventType.PURCHASE] / views < 0.05
    assert 0.003 < kinds[EventType.HIDE] / views < 0.03
    assert kinds[EventType.LIKE] > kinds[EventType.CART]
    assert kinds[EventType.FOLLOW] > kinds[EventType.UNFOLLOW] > 0
    # Every purchase follows a cart of the same item by the same user.
    carted: set[tuple[str, str | None]] = set()
    for e in stream:
        if e.type is EventType.CART:
            carted.add((e.user_id, e.item_id))
        elif e.type is EventType.PURCHASE:
            assert (e.user_id, e.item_id) in carted


def test_views_follow_favourite_categories(stream: list[Event], world: World) -> None:
    favourites = {u.user_id: set(u.favourites) for u in world.users}
    category = {i.item_id: i.category for i in world.items}
    views = [e for e in stream if e.type is EventType.VIEW and e.stream_id is None]
    in_favs = sum(1 for e in views if category[e.item_id or ""] in favourites[e.user_id])
    assert in_favs / len(views) > 0.6


def test_shares_go_to_current_followers(stream: list[Event], world: World) -> None:
    followers = {u.user_id: set(world.followers_of(u.user_id)) for u in world.users}
    shares = 0
    for e in stream:
        if e.type is EventType.FOLLOW:
            followers[e.target_user_id or ""].add(e.user_id)
        elif e.type is EventType.UNFOLLOW:
            followers[e.target_user_id or ""].remove(e.user_id)  # must have been following
        elif e.type is EventType.SHARE:
            shares += 1
            assert e.target_user_id in followers[e.user_id]
    assert shares > 50


def test_share_recipients_act_and_cascade(stream: list[Event]) -> None:
    actions: dict[tuple[str, str | None], list[tuple[float, EventType]]] = collections.defaultdict(
        list
    )
    for e in stream:
        if e.item_id is not None:
            actions[(e.user_id, e.item_id)].append((e.ts, e.type))
    shares = [e for e in stream if e.type is EventType.SHARE]
    acted = [
        s
        for s in shares
        if any(ts > s.ts for ts, _ in actions[(s.target_user_id or "", s.item_id)])
    ]
    assert len(acted) / len(shares) > 0.25
    received = {(s.target_user_id, s.item_id): s.ts for s in shares}
    reshared = [s for s in shares if received.get((s.user_id, s.item_id), s.ts) < s.ts]
    assert reshared, "some shared items are shared on by their recipients"
    bought = [
        s
        for s in acted
        if any(
            ts > s.ts and kind is EventType.PURCHASE
            for ts, kind in actions[(s.target_user_id or "", s.item_id)]
        )
    ]
    assert bought


def test_live_streams_come_in_bursts(stream: list[Event]) -> None:
    positions: dict[str, list[int]] = collections.defaultdict(list)
    for n, e in enumerate(stream):
        if e.stream_id is not None:
            positions[e.stream_id].append(n)
            assert e.type in {
                EventType.VIEW,
                EventType.LIKE,
                EventType.CART,
                EventType.PURCHASE,
                EventType.FOLLOW,
            }
    assert len(positions) >= 5
    gaps = [b - a for pos in positions.values() for a, b in itertools.pairwise(pos)]
    # Inside a burst a stream's events are (nearly) back to back...
    assert statistics.median(gaps) <= 2
    # ...but a stream lasts much longer than one burst: there are pauses between bursts.
    spans = [pos[-1] - pos[0] for pos in positions.values() if len(pos) > 30]
    assert statistics.median(spans) > 100
    assert max(gaps) > 20
    share = sum(len(p) for p in positions.values()) / len(stream)
    assert 0.02 < share < 0.3


def test_complementary_items_are_bought_together(stream: list[Event], world: World) -> None:
    category = {i.item_id: i.category for i in world.items}
    complements = {c.path: set(c.complements) for c in world.categories}
    recent: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    pairs: collections.Counter[tuple[str, str]] = collections.Counter()
    for n, e in enumerate(stream):
        if e.type is not EventType.PURCHASE or e.stream_id is not None:
            continue
        mine = category[e.item_id or ""]
        for m, other in recent[e.user_id]:
            if n - m < 40 and category[other] != mine:
                a, b = sorted((category[other], mine))
                pairs[(a, b)] += 1
        recent[e.user_id].append((n, e.item_id or ""))
    complementary = sum(
        k for (a, b), k in pairs.items() if b in complements[a] or a in complements[b]
    )
    assert pairs.total() > 30
    # Baseline: how often two purchases from different categories would be complements if
    # the categories were drawn independently from the overall purchase mix.
    mix = collections.Counter(
        category[e.item_id or ""] for e in stream if e.type is EventType.PURCHASE
    )
    cross = [(a, b) for a in mix for b in mix if a != b]
    paired = sum(mix[a] * mix[b] for a, b in cross if b in complements[a] or a in complements[b])
    chance = paired / sum(mix[a] * mix[b] for a, b in cross)
    observed = complementary / pairs.total()
    assert observed > 3 * chance
    assert observed > 0.3
    assert pairs[("electronics/phone-cases", "electronics/phones")] > 0


def test_generation_speed(world: World) -> None:
    started = time.perf_counter()
    n = sum(1 for _ in generate_events(world, SEED, 100_000))
    elapsed = time.perf_counter() - started
    print(f"\n100k simulated events in {elapsed:.2f}s ({n / elapsed:,.0f} events/s)")
    assert n == 100_000


# --- the producer, against an in-memory stand-in ----------------------------------------------


class FakeProducer:
    """Records what AIOKafkaProducer would have sent; every send is delivered at once."""

    instances: list[FakeProducer] = []  # noqa: RUF012 - shared on purpose, reset per test
    fail_after: int | None = None

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes, bytes, float]] = []
        self.started = self.stopped = False
        FakeProducer.instances.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def flush(self) -> None:
        return None

    async def send(self, topic: str, *, key: bytes, value: bytes) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if FakeProducer.fail_after is not None and len(self.sent) >= FakeProducer.fail_after:
            fut.set_exception(KafkaTimeoutError())
        else:
            fut.set_result(None)
        self.sent.append((topic, key, value, time.monotonic()))
        return fut


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    FakeProducer.instances = []
    FakeProducer.fail_after = None
    monkeypatch.setattr(simulate, "AIOKafkaProducer", FakeProducer)
    return FakeProducer


@pytest.fixture
def small_world() -> World:
    return generate_world(1, users=40, items=150)


async def test_produce_keys_events_by_user(
    fake_kafka: type[FakeProducer], small_world: World
) -> None:
    cfg = Settings(topic_prefix="t1.")
    events = list(generate_events(small_world, 1, 300, start_ts=DEFAULT_START_TS))
    before = time.time()
    assert await simulate.produce(cfg, small_world, events, rate=0) == 300
    (producer,) = fake_kafka.instances
    assert producer.started
    assert producer.stopped
    assert producer.config["linger_ms"] > 0
    for (topic, key, value, _), original in zip(producer.sent, events, strict=True):
        assert topic == "t1.events"
        assert key == original.user_id.encode()
        parsed = parse_event(value, now=time.time())
        assert isinstance(parsed, Event)
        # Flat out, events carry the wall-clock time they were sent.
        assert parsed.ts >= round(before, 3)
        assert (parsed.event_id, parsed.item_id) == (original.event_id, original.item_id)


async def test_produce_paces_without_drift(
    fake_kafka: type[FakeProducer], small_world: World
) -> None:
    events = list(generate_events(small_world, 1, 600, start_ts=time.time(), mean_gap_s=1 / 2000))
    started = time.monotonic()
    sent = await simulate.produce(Settings(), small_world, events, rate=2000)
    elapsed = time.monotonic() - started
    assert sent == 600
    assert 0.27 < elapsed < 0.6  # 600 events at 2000/s = 0.3 s
    stamps = [s[3] for s in fake_kafka.instances[0].sent]
    # Event n goes out close to start + n/rate: no accumulated lag at the end.
    assert stamps[-1] - stamps[0] == pytest.approx(599 / 2000, abs=0.03)
    sent_ts = [orjson.loads(s[2])["ts"] for s in fake_kafka.instances[0].sent]
    assert sent_ts == [e.ts for e in events]  # paced events keep their simulated times


async def test_produce_stops_when_asked(fake_kafka: type[FakeProducer], small_world: World) -> None:
    stop = asyncio.Event()
    seen: list[str] = []

    def on_sent(event: Event) -> None:
        seen.append(event.event_id)
        if len(seen) == 25:
            stop.set()

    events = generate_events(small_world, 1, None, start_ts=time.time(), mean_gap_s=0.001)
    sent = await simulate.produce(Settings(), small_world, events, 1000, stop, on_sent)
    assert sent == 25 == len(seen)
    assert fake_kafka.instances[0].stopped


async def test_produce_surfaces_delivery_errors(
    fake_kafka: type[FakeProducer], small_world: World
) -> None:
    fake_kafka.fail_after = 10
    events = generate_events(small_world, 1, 50)
    with pytest.raises(KafkaTimeoutError):
        await simulate.produce(Settings(), small_world, events, rate=0)
    assert fake_kafka.instances[0].stopped


async def test_produce_catalog_keys_items(
    fake_kafka: type[FakeProducer], small_world: World
) -> None:
    assert await simulate.produce_catalog(Settings(topic_prefix="c."), small_world) == 150
    sent = fake_kafka.instances[0].sent
    assert [(t, k) for t, k, _, _ in sent] == [
        ("c.catalog", i.item_id.encode()) for i in small_world.items
    ]
    assert orjson.loads(sent[0][2])["item_id"] == small_world.items[0].item_id


def test_run_simulate_end_to_end_on_the_fake(
    fake_kafka: type[FakeProducer], capsys: pytest.CaptureFixture[str]
) -> None:
    code = simulate.run_simulate(
        Settings(), users=30, items=80, events=200, rate=0, seed=3, catalog=True
    )
    assert code == 0
    catalog, events = fake_kafka.instances
    assert (len(catalog.sent), len(events.sent)) == (80, 200)
    out = capsys.readouterr().out.strip()
    assert out.startswith("simulate: sent 200 events")
    assert "\n" not in out
    assert not any(f"u{n}" in out.split() for n in range(30))  # no user ids in the summary
    # Ids are tagged per run, so a re-run with the same seed is not de-duplicated away.
    first_id = orjson.loads(events.sent[0][2])["event_id"]
    assert first_id.startswith("sim-3-")
    assert first_id != "sim-3-0"


def test_run_simulate_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        simulate.run_simulate(Settings(), users=1, items=5, events=1, rate=1, seed=1, catalog=False)
        == 2
    )
    assert "--users" in capsys.readouterr().err
