"""The knobs learned from the stream (models.halflife, models.blendlearn, models.shrinkage,
models.knobs), the baselines (models.itemknn, models.baselines) and the ablation."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from unittest.mock import patch

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from models.ablation import AblatedHybrid
from models.blendlearn import FLOOR, MIN_REQUESTS, BlendLearner
from models.evaluation import EvalParams, replay
from models.events import DEFAULT_WEIGHTS, ITEM_TYPES, Event, EventType
from models.halflife import GRID_S, LearnedHalfLife
from models.hybrid import build_hybrid
from models.itemknn import ItemKNN
from models.recommend import Pool, Source, blend_pools
from models.shrinkage import ShrinkageEstimator
from models.state import StateParams
from streams.tools.evaluate import ghost_followees
from tests.unit.strategies import event_streams

# ---- half-life ---------------------------------------------------------------------------------


def _zipf_stream(
    rng: random.Random, items: int, events: int, gap_s: float, shift_every: int | None
) -> list[tuple[str, float]]:
    """(item, ts): Zipf draws over ``items``; with ``shift_every``, the ranking is reshuffled
    every that many events (a fast-moving shop), else fixed (a stationary one)."""
    weights = [1.0 / (rank + 1) for rank in range(items)]
    order = list(range(items))
    out = []
    for n in range(events):
        if shift_every and n % shift_every == 0:
            rng.shuffle(order)
        pick = rng.choices(order, weights)[0]
        out.append((f"i{pick}", n * gap_s))
    return out


def test_a_fast_moving_stream_learns_a_short_half_life_a_stationary_one_a_long_one() -> None:
    rng = random.Random(3)
    fast, still = LearnedHalfLife(), LearnedHalfLife()
    for item, ts in _zipf_stream(rng, 200, 6000, gap_s=60.0, shift_every=300):
        fast.update(item, 1.0, ts)  # the ranking changes every 5 hours
    for item, ts in _zipf_stream(rng, 200, 6000, gap_s=60.0, shift_every=None):
        still.update(item, 1.0, ts)
    assert fast.half_life_s <= 86_400.0
    assert still.half_life_s >= 6000 * 60.0  # longer than the whole stream


def test_the_same_stream_slowed_down_learns_a_proportionally_longer_half_life() -> None:
    # The half-life is the stream's own time scale: stretch time ×64, it moves ×64 (3 steps).
    quick, slow = LearnedHalfLife(), LearnedHalfLife()
    for item, ts in _zipf_stream(random.Random(5), 200, 6000, 60.0, shift_every=300):
        quick.update(item, 1.0, ts)
        slow.update(item, 1.0, ts * 64.0)
    assert slow.half_life_s == quick.half_life_s * 64.0


def test_a_resumed_estimator_keeps_its_choice_and_scores_and_relearns_the_items() -> None:
    # What the learner stores with its progress: a restart does not fall back to the start.
    stream = _zipf_stream(random.Random(3), 200, 3000, gap_s=60.0, shift_every=None)
    learnt = LearnedHalfLife()
    for item, ts in stream:
        learnt.update(item, 1.0, ts)
    assert learnt.half_life_s != LearnedHalfLife().half_life_s
    resumed = LearnedHalfLife.resume(learnt.choice())
    assert resumed.state() == learnt.state()
    assert resumed.top(5, now=3000 * 60.0) == []  # no item history came along
    for item, ts in stream[:200]:
        resumed.update(item, 1.0, 3000 * 60.0 + ts)
    assert resumed.half_life_s == learnt.half_life_s


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.floats(0.5, 5.0), st.floats(0.0, 7200.0)),
        min_size=1,
        max_size=120,
    )
)
def test_top_is_the_decayed_popularity_under_the_chosen_half_life(
    updates: list[tuple[str, float, float]],
) -> None:
    pop = LearnedHalfLife(top_size=5)
    ts = 0.0
    history: list[tuple[str, float, float]] = []
    for item, weight, gap in updates:
        ts += gap
        pop.update(item, weight, ts)
        history.append((item, weight, ts))
    h = pop.half_life_s
    now = ts + 100.0
    truth: dict[str, float] = defaultdict(float)
    for item, weight, t in history:
        truth[item] += weight * (1.0 if math.isinf(h) else 2.0 ** (-(now - t) / h))
    for item, value in truth.items():
        assert pop.score(item, now) == pytest.approx(value, rel=1e-9)
    got = [item for item, _ in pop.top(5, now)]
    best = sorted(truth.values(), reverse=True)[: len(got)]
    assert [truth[item] for item in got] == pytest.approx(best, rel=1e-9)
    assert h in GRID_S


# ---- blend weights -----------------------------------------------------------------------------


def _pool(items: list[str]) -> Pool:
    """Items best first, scores falling."""
    return {item: (1.0 / (n + 1), ()) for n, item in enumerate(items)}


def test_the_source_that_ranks_the_chosen_items_first_gets_the_weight() -> None:
    learner = BlendLearner({Source.ITEM_CF: 1.0, Source.MF: 1.0, Source.POPULAR: 0.0})
    rng = random.Random(1)
    for n in range(300):
        chosen = f"c{n}"
        rest = [f"x{rng.randrange(1000)}" for _ in range(9)]
        pools = {
            Source.POPULAR: _pool([chosen, *rest]),  # always right, first
            Source.ITEM_CF: _pool([*rest[:4], chosen, *rest[4:]]),  # right, fifth
            Source.MF: _pool(rest),  # never right
        }
        learner.observe(blend_pools(pools, learner.weights).scores(), chosen)
    w = learner.weights
    assert w[Source.POPULAR] == 1.0
    assert 0.3 < w[Source.ITEM_CF] < 0.5  # 1/log2(6) of the best
    assert w[Source.MF] == 2.0**FLOOR


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=150))
def test_weights_stay_in_range_and_wait_for_a_record(draws: list[tuple[int, int]]) -> None:
    start = {Source.ITEM_CF: 1.0, Source.SOCIAL: 0.5, Source.FBT: 0.0}
    learner = BlendLearner(start)
    items = ["a", "b", "c", "d"]
    for chosen, shift in draws:
        pools = {
            Source.ITEM_CF: _pool(items[shift:] + items[:shift]),
            Source.SOCIAL: _pool(items[::-1]),
            Source.FBT: _pool(items[:1]),
        }
        learner.observe(blend_pools(pools, learner.weights).scores(), items[chosen])
    for source, weight in learner.weights.items():
        assert 2.0**FLOOR <= weight <= 1.0
        if learner.counts.get(source, 0) < MIN_REQUESTS:
            assert weight == max(start[source], 2.0**-4)
    assert BlendLearner.restore(learner.state()).weights == learner.weights


@settings(max_examples=300, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.dictionaries(st.integers(0, 8), st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0])),
            st.dictionaries(st.integers(0, 8), st.floats(0.0, 3.0)),
            st.dictionaries(st.integers(0, 8), st.sampled_from([0.5, 1.0])),
            st.integers(0, 8),
        ),
        min_size=1,
        max_size=40,
    )
)
@example(  # a lead of 1e-38 over 1e-280 vanishes next to 0.25: no win
    requests=[
        (
            {0: 0.0, 1: 0.5, 6: 0.25, 2: 0.25, 3: 0.25},
            {6: 7.090243760047635e-280, 0: 1.0, 1: 1.0, 2: 1.0, 3: 1.1754943508222875e-38},
            {},
            6,
        )
    ]
)
def test_the_outranked_shortcut_learns_what_the_full_paired_check_learns(
    requests: list[tuple[dict[int, float], dict[int, float], dict[int, float], int]],
) -> None:
    """Skipping the paired check for an item that ``k`` candidates outrank whatever the
    weights (models.blendlearn.outranked) changes no correction: ties, zeros and items in
    one, two or three sources included."""
    start = {Source.ITEM_CF: 1.0, Source.MF: 0.5, Source.FBT: 0.25}
    fast, full = BlendLearner(start, k=3), BlendLearner(start, k=3)
    for cf, mf, fbt, chosen in requests:
        pools: dict[Source, Pool] = {
            source: {f"i{n}": (score, ()) for n, score in scores.items()}
            for source, scores in ((Source.ITEM_CF, cf), (Source.MF, mf), (Source.FBT, fbt))
        }
        fast.observe(blend_pools(pools, fast.weights).scores(), f"i{chosen}")
        with patch("models.blendlearn.outranked", lambda *_: False):
            full.observe(blend_pools(pools, full.weights).scores(), f"i{chosen}")
        assert fast.state() == full.state()


def test_an_item_no_source_proposed_teaches_nothing() -> None:
    learner = BlendLearner({Source.ITEM_CF: 1.0})
    blended = blend_pools({Source.ITEM_CF: _pool(["a"])}, learner.weights)
    assert learner.observe(blended.scores(), "zzz") is False
    assert learner.observations == 0


# ---- shrinkage ---------------------------------------------------------------------------------


def test_estimator_forgets_items_whose_weight_is_withdrawn() -> None:
    est = ShrinkageEstimator(scale=2.0, floor=0.5)
    est.update(0.0, 4.0)
    est.update(4.0, 1e-12)
    assert (est.count, est.value) == (0, 0.5)


# ---- item-kNN ----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(event_streams(max_size=80))
def test_item_knn_scores_are_the_summed_cosines_of_window_co_occurrence(
    events: list[Event],
) -> None:
    knn = ItemKNN(window=3)
    windows: dict[str, list[str]] = defaultdict(list)
    pairs: Counter[tuple[str, str]] = Counter()
    users_of: Counter[str] = Counter()
    for event in events:
        knn.learn(event)
        item = event.item_id
        if item is None or event.type not in ITEM_TYPES or DEFAULT_WEIGHTS[event.type] <= 0:
            continue
        window = windows[event.user_id]
        if item in window:
            window.remove(item)
            window.append(item)
            continue
        for other in window:
            pairs[item, other] += 1
            pairs[other, item] += 1
        users_of[item] += 1
        window.append(item)
        del window[:-3]
    items = sorted(users_of)
    for user, window in windows.items():
        got = knn.candidate_scores(user, items, now=0.0)
        want = [
            sum(pairs[j, c] / math.sqrt(users_of[j] * users_of[c]) for j in window) for c in items
        ]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


# ---- the ablation and the ghost follows --------------------------------------------------------


def _stream(n: int = 400, seed: int = 2) -> list[Event]:
    rng = random.Random(seed)
    events = [
        Event(f"f{u}", EventType.FOLLOW, f"u{u}", 1e9, target_user_id=f"u{(u + 1) % 20}")
        for u in range(20)
    ]
    for k in range(n):
        user, item = f"u{rng.randrange(20)}", f"i{min(rng.randrange(40), rng.randrange(40))}"
        kind = rng.choice([EventType.VIEW, EventType.LIKE, EventType.PURCHASE])
        events.append(Event(f"e{k}", kind, user, 1e9 + 60.0 * (k + 1), item_id=item))
    return events


def test_switching_off_a_source_nobody_proposes_changes_nothing() -> None:
    # Without a catalogue there is no content source: its ablation must be the hybrid itself.
    events = _stream()
    hybrid = build_hybrid(StateParams(), learn_knobs=True)
    no_content = AblatedHybrid(hybrid, Source.CONTENT)
    no_cf = AblatedHybrid(hybrid, Source.ITEM_CF)
    report = replay(events, [hybrid, no_content, no_cf], EvalParams())
    figures = {name: (m.hits, m.auc, m.coverage) for name, m in report.models.items()}
    assert figures["hybrid-content"] == figures["hybrid"]
    assert figures["hybrid-item_cf"] != figures["hybrid"]
    assert report.models["hybrid-item_cf"].per_source["item_cf"].slots == 0


def test_ghost_follows_keep_every_request_and_hide_every_followee() -> None:
    events = _stream()
    ghosts = ghost_followees(events)
    assert [(e.user_id, e.item_id, e.ts) for e in ghosts] == [
        (e.user_id, e.item_id, e.ts) for e in events
    ]
    acting = {e.user_id for e in events if e.item_id is not None}
    followed = {e.target_user_id for e in ghosts if e.type is EventType.FOLLOW}
    assert followed
    assert not followed & acting
    plain = replay(events, [build_hybrid(StateParams(), learn_knobs=True)], EvalParams())
    ghost = replay(ghosts, [build_hybrid(StateParams(), learn_knobs=True)], EvalParams())
    assert plain.evaluated == ghost.evaluated
    assert ghost.models["hybrid"].per_source.get("social") is None or (
        ghost.models["hybrid"].per_source["social"].slots == 0
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("abcdef"), st.floats(0.5, 5.0), st.floats(0.0, 7200.0), st.booleans()
        ),
        min_size=1,
        max_size=80,
    )
)
def test_withdrawing_events_leaves_the_popularity_of_a_stream_without_them(
    updates: list[tuple[str, float, float, bool]],
) -> None:
    """Erasure's undo (models/halflife.py ``withdraw``): after taking some events back, every
    item's popularity under the half-life in use is what the events left behind make it."""
    pop = LearnedHalfLife(top_size=6)
    ts, history = 0.0, []
    for item, weight, gap, erased in updates:
        ts += gap
        pop.update(item, weight, ts)
        history.append((item, weight, ts, erased))
    for item, weight, at, erased in history:
        if erased:
            pop.withdraw(item, weight, at)
    h, now = pop.half_life_s, ts + 100.0
    kept: dict[str, float] = defaultdict(float)
    for item, weight, at, erased in history:
        if not erased:
            kept[item] += weight * (1.0 if math.isinf(h) else 2.0 ** (-(now - at) / h))
    for item in "abcdef":
        assert pop.score(item, now) == pytest.approx(kept.get(item, 0.0), rel=1e-6, abs=1e-9)
    assert {item for item, _ in pop.top(6, now)} == {i for i, v in kept.items() if v > 0}
    resumed = LearnedHalfLife.resume(pop.choice())
    resumed.put_rows(pop.take_rows())
    assert resumed.top(6, now) == pop.top(6, now)  # the same bytes, the same sums
