"""Offline evaluation (models/evaluation/): metrics on hand-computed cases, their invariants,
the models behind the Recommender protocol, and the replay finding a planted pattern."""

from __future__ import annotations

import math
import random
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation import (
    EvalParams,
    ItemCFRecommender,
    PopularityRecommender,
    Recommender,
    Scored,
    coverage,
    fold_of,
    gini,
    hit_rate,
    long_tail_share,
    mrr,
    ndcg,
    ndcg_gain,
    pooled_auc,
    rank_of,
    replay,
    request_auc,
    roc_points,
    short_head,
    temporal_cut,
)
from models.events import Event, EventType
from models.state import StateParams
from tests.unit.reference import Reference
from tests.unit.strategies import event_streams

T0 = 1_700_000_000.0
ranks_st = st.lists(st.one_of(st.none(), st.integers(min_value=1, max_value=10)), max_size=40)
scores_st = st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]), min_size=1, max_size=30)


def _view(n: int, user: str, item: str, kind: EventType = EventType.VIEW) -> Event:
    return Event(f"e{n}", kind, user, T0 + n, item_id=item)


# ---- metrics on hand-computed examples ---------------------------------------------------------


def test_rank_based_metrics_by_hand() -> None:
    # Ranks 1, miss, 4: HR = 2/3; NDCG = (1 + 1/log2(5)) / 3; MRR = (1 + 1/4) / 3.
    ranks = [1, None, 4]
    assert hit_rate(ranks) == pytest.approx(2 / 3)
    assert ndcg(ranks) == pytest.approx((1 + 1 / math.log2(5)) / 3)
    assert mrr(ranks) == pytest.approx(1.25 / 3)
    assert ndcg_gain(2) == pytest.approx(1 / math.log2(3))
    assert hit_rate([]) == ndcg([]) == mrr([]) == 0.0
    assert rank_of("c", ["a", "b", "c"]) == 3
    assert rank_of("z", []) is None


def test_gini_and_coverage_by_hand() -> None:
    # Sorted counts 1,2,3,4: Σ(2i−n−1)x = −3·1 −1·2 +1·3 +3·4 = 10; 10 / (4·10) = 0.25.
    assert gini([4, 1, 3, 2]) == pytest.approx(0.25)
    assert gini([7, 7, 7]) == 0.0
    # One item of five takes every slot: (n−1)/n, zeros supplied by catalog_size.
    assert gini([10], catalog_size=5) == pytest.approx(0.8)
    assert gini([0, 0]) == 0.0
    assert coverage({"a", "b", "c"}, 12) == 0.25
    assert coverage(set(), 0) == 0.0


def test_long_tail_by_hand() -> None:
    popularity = {"a": 10, "b": 8, "c": 1, "d": 1, "e": 0}
    head = short_head(popularity, head_share=0.4)
    assert head == {"a", "b"}
    assert long_tail_share({"a": 2, "c": 1, "e": 1}, head) == 0.5
    assert long_tail_share({}, head) == 0.0


def test_auc_by_hand_including_ties() -> None:
    # Positive 0.5 vs [0.2, 0.5, 0.9, 0.5]: one below, two ties, one above → (1 + 2·½) / 4.
    assert request_auc(0.5, [0.2, 0.5, 0.9, 0.5]) == 0.5
    assert request_auc(1.0, [0.0, 0.0]) == 1.0
    assert request_auc(0.0, [0.0, 0.0, 0.0]) == 0.5  # a model that knows nothing
    with pytest.raises(ValueError, match="negative"):
        request_auc(1.0, [])
    # Pooled: positives {0.9, 0.4}, negatives {0.1, 0.4, 0.5}: 0.9 beats 3, 0.4 beats 1 and
    # ties 1 → (3 + 1 + ½) / 6.
    assert pooled_auc([0.9, 0.4], [0.1, 0.4, 0.5]) == pytest.approx(4.5 / 6)


# ---- invariants ---------------------------------------------------------------------------------


@given(ranks_st)
def test_rank_metrics_lie_in_unit_interval_and_are_ordered(ranks: list[int | None]) -> None:
    hr, nd, rr = hit_rate(ranks), ndcg(ranks), mrr(ranks)
    assert 0.0 <= rr <= nd <= hr <= 1.0  # 1/r ≤ 1/log2(r+1) ≤ 1 for every rank r ≥ 1


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=40), st.integers(0, 60))
def test_gini_lies_in_unit_interval(counts: list[int], catalog_size: int) -> None:
    assert 0.0 <= gini(counts, catalog_size) < 1.0


@given(st.integers(min_value=1, max_value=100), st.integers(min_value=1, max_value=50))
def test_gini_of_equal_exposure_is_zero(count: int, items: int) -> None:
    assert gini([count] * items) == 0.0
    assert gini([count] * items, catalog_size=items) == 0.0


@given(scores_st, scores_st)
def test_aucs_match_brute_force_and_the_roc_area(positives: list[float], negs: list[float]) -> None:
    pairs = [(p, n) for p in positives for n in negs]
    brute = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert pooled_auc(positives, negs) == pytest.approx(brute)
    assert 0.0 <= request_auc(positives[0], negs) <= 1.0
    fpr, tpr = roc_points(positives, negs)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    area = sum(
        (x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in pairwise(zip(fpr, tpr, strict=True))
    )
    assert area == pytest.approx(brute)


# ---- the models ---------------------------------------------------------------------------------


@settings(max_examples=60)
@given(event_streams(), st.integers(min_value=1, max_value=4))
def test_incremental_popular_list_equals_the_states(events: list[Event], cached: int) -> None:
    # A tiny half-life forces landmark rebases; a tiny cap forces popularity evictions.
    for cap in (3, 50):
        params = StateParams(half_life_s=30.0, popularity_cap=cap)
        model = ItemCFRecommender(params, popular_items=cached)
        for event in events:
            model.learn(event)
            assert model.popular_view() == model.state.popular(cached)


@given(event_streams())
def test_never_recommends_a_touched_item_even_beyond_the_history_window(
    events: list[Event],
) -> None:
    models: list[Recommender] = [
        ItemCFRecommender(StateParams(history_size=2)),
        PopularityRecommender(),
    ]
    touched: dict[str, set[str]] = {}
    for event in events:
        for model in models:
            model.learn(event)
        if event.item_id is not None:
            touched.setdefault(event.user_id, set()).add(event.item_id)
    for user, items in touched.items():
        for model in models:
            shown = [s.item_id for s in model.recommend(user, 5, items, T0 + 10**6)]
            assert not set(shown) & items
            assert len(shown) == len(set(shown)) <= 5


@given(event_streams())
def test_candidate_scores_rank_as_the_recommendations_do(events: list[Event]) -> None:
    now = T0 + 10**6
    models: list[Recommender] = [ItemCFRecommender(StateParams()), PopularityRecommender()]
    for model in models:
        for event in events:
            model.learn(event)
        for user in {e.user_id for e in events}:
            recs = model.recommend(user, 10, set(), now)
            scores = model.candidate_scores(user, [r.item_id for r in recs], now)
            assert all(s > 0 for s in scores)
            assert scores == sorted(scores, reverse=True)


def test_item_cf_wraps_the_workers_code() -> None:
    # Same events, same reads: the wrapper's list is recommend() over the worker's view.
    from models.recommend import RecommendParams, recommend

    events = [
        _view(n, u, i, EventType.PURCHASE)
        for n, (u, i) in enumerate([("a", "x"), ("a", "y"), ("b", "x"), ("b", "z"), ("c", "x")])
    ]
    model = ItemCFRecommender(StateParams())
    state = Reference(StateParams())
    for event in events:
        model.learn(event)
        state.apply(event)
    view = state.user_view("c", recent_items=20, neighbours=20)
    expected = recommend(view, state.popular(100), RecommendParams(), now=T0 + 9)
    got = model.recommend("c", 10, {"x"}, T0 + 9)
    assert got == [Scored(r.item_id, r.score, r.source.value) for r in expected.items]
    assert {s.source for s in got} == {"item_cf"}


def test_item_cf_refuses_to_show_seen_items_only_in_the_window() -> None:
    from models.recommend import RecommendParams

    with pytest.raises(ValueError, match="exclude_seen"):
        ItemCFRecommender(StateParams(), RecommendParams(exclude_seen=False))


# ---- the replay ---------------------------------------------------------------------------------


def _planted_stream(users: int = 150, seed: int = 3) -> list[Event]:
    """Each user views a_k and later b_k for one of 40 pairs k, with views of random items from
    a large pool in between (noise). Only item-to-item knowledge predicts b_k after a_k."""
    rng = random.Random(seed)
    raw: list[tuple[float, str, str]] = []
    for u in range(users):
        k = rng.randrange(40)
        start = rng.uniform(0, 10_000)
        raw.append((start, f"u{u}", f"a{k}"))
        for step in range(2):
            raw.append((start + 1 + step, f"u{u}", f"n{rng.randrange(300)}"))
        raw.append((start + 5, f"u{u}", f"b{k}"))
    raw.sort()
    return [_view(n, user, item) for n, (_, user, item) in enumerate(raw)]


def test_replay_finds_a_planted_pattern_and_beats_popularity() -> None:
    events = _planted_stream()
    report = replay(events, [ItemCFRecommender(StateParams()), PopularityRecommender()])
    cf, pop = report.models["itemcf"], report.models["popularity"]
    assert report.evaluated == cf.evaluated == pop.evaluated > 0
    # Each user's b_k is a fresh item after a_k: item-CF finds it once a few users showed it.
    b_requests = sum(
        1 for n in report.traces["itemcf"].positions if str(events[n].item_id).startswith("b")
    )
    assert cf.per_source["item_cf"].hits >= 0.5 * b_requests
    assert cf.hr > pop.hr + 0.2
    assert cf.ndcg > pop.ndcg
    assert cf.mrr > pop.mrr
    assert cf.auc is not None
    assert pop.auc is not None
    assert cf.auc > pop.auc
    assert cf.per_source["item_cf"].hr + cf.per_source["popular"].hr == pytest.approx(cf.hr)
    for figure in (cf.coverage, cf.gini, cf.long_tail):
        assert 0.0 <= figure <= 1.0


def test_replay_evaluates_only_fresh_items_of_known_users() -> None:
    events = [
        _view(0, "u1", "a"),  # first event of u1: not evaluated
        _view(1, "u1", "a"),  # already touched: not evaluated
        _view(2, "u1", "b"),  # evaluated
        _view(3, "u1", "c", EventType.HIDE),  # a hide is never a hit to find
        Event("e4", EventType.FOLLOW, "u2", T0 + 4, target_user_id="u1"),
        _view(5, "u2", "a"),  # u2's earlier follow counts as an earlier event: evaluated
        _view(6, "u1", "c"),  # touched (hidden) before: not evaluated
    ]
    report = replay(events, [PopularityRecommender()])
    assert report.evaluated == 2
    assert report.cold_targets == 1  # "b" had no earlier event; "a" had
    # b (cold, 0) ties its one negative c (0); a (two views) beats b and c (a hide adds nothing).
    popularity = report.models["popularity"]
    assert popularity.auc == 0.75
    assert popularity.auc_warm == 1.0
    assert report.traces["popularity"].positions.tolist() == [2, 5]


@given(event_streams(max_size=40), st.integers(min_value=2, max_value=4))
@settings(max_examples=40)
def test_one_grouped_replay_equals_one_replay_per_fold(events: list[Event], folds: int) -> None:
    events = sorted(events, key=lambda e: e.ts)
    no_auc = EvalParams(negatives=0)

    def models() -> list[Recommender]:
        return [ItemCFRecommender(StateParams()), PopularityRecommender()]

    grouped = replay(events, models(), no_auc, group_of=lambda e: fold_of(e.user_id, folds))
    assert sum(g.evaluated for g in grouped.groups.values()) == grouped.evaluated
    for fold in range(folds):
        alone = replay(
            events,
            models(),
            no_auc,
            is_test=lambda _n, e, f=fold: fold_of(e.user_id, folds) == f,  # type: ignore[misc]
        )
        group = grouped.groups.get(fold)
        assert alone.evaluated == (group.evaluated if group else 0)
        if group is not None:
            assert group.models == alone.models


def test_temporal_split_tests_only_after_the_cut_and_frozen_learns_nothing() -> None:
    events = _planted_stream(users=60)
    cut = temporal_cut(events, 0.5)
    assert 0 < cut < len(events)

    def after(n: int, _e: Event) -> bool:
        return n >= cut

    frozen_model = PopularityRecommender()
    report = replay(events, [frozen_model], is_test=after, learn_test=False)
    assert min(report.traces["popularity"].positions) >= cut
    trained = PopularityRecommender()
    for event in events[:cut]:
        trained.learn(event)
    assert frozen_model.scores == trained.scores

    live = replay(events, [PopularityRecommender()], is_test=after)
    assert live.evaluated == report.evaluated  # what is tested does not depend on learning


def test_temporal_cut_keeps_equal_timestamps_together() -> None:
    events = [
        Event(f"e{n}", EventType.VIEW, "u", ts, item_id="a") for n, ts in enumerate([1, 1, 1])
    ]
    assert temporal_cut(events, 0.5) == 3
    with pytest.raises(ValueError, match="train_fraction"):
        temporal_cut(events, 1.5)
