"""The full assembly in-process (models/hybrid/): every source at once, as eval replays it."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation import EvalParams, PopularityRecommender, replay
from models.events import Event, EventType
from models.hybrid import HybridRecommender, build_hybrid
from models.ranker import OnlineRanker
from models.recommend import CandidateFeatures, Source
from models.state import StateParams
from tests.unit.strategies import event_streams

CATALOG = {
    f"i{k}": {"title": f"item {k} {'phone' if k % 2 else 'dress'}", "category": f"c{k % 3}"}
    for k in range(10)
}
NOW = 1_700_000_000.0 + 10**6


def _trained(events: list[Event], ranker: bool = False) -> HybridRecommender:
    model = build_hybrid(StateParams(), catalog=CATALOG, learned_ranker=ranker, seed=3)
    for event in events:
        model.learn(event)
    return model


@settings(max_examples=40, deadline=None)
@given(event_streams(), st.booleans())
def test_never_a_touched_item_scores_finite_and_every_item_explained(
    events: list[Event], ranker: bool
) -> None:
    model = _trained(events, ranker)
    touched: dict[str, set[str]] = {}
    for e in events:
        if e.item_id is not None:
            touched.setdefault(e.user_id, set()).add(e.item_id)
    for user, items in touched.items():
        recs = model.recommend(user, 5, items, NOW)
        shown = [r.item_id for r in recs]
        assert not set(shown) & items  # bought, hidden, viewed: never again
        assert len(shown) == len(set(shown)) <= 5
        assert all(math.isfinite(r.score) for r in recs)
        assert {r.source for r in recs} <= {s.value for s in Source}
        scores = model.candidate_scores(user, [*items, "i0", "i9"], NOW)
        assert all(math.isfinite(s) and s >= 0 for s in scores)
        assert all(s == 0 for s in scores[: len(items)])  # touched items are excluded


@settings(max_examples=20, deadline=None)
@given(event_streams())
def test_same_events_same_seed_same_lists(events: list[Event]) -> None:
    a, b = _trained(events), _trained(events)
    for user in {e.user_id for e in events}:
        assert a.recommend(user, 5, set(), NOW) == b.recommend(user, 5, set(), NOW)


def test_the_hybrid_finds_a_planted_pattern_and_beats_popularity() -> None:
    # Two tastes: phone buyers go on to cases, dress buyers to shoes; the dresses are far
    # more popular, so popularity recommends them to everyone.
    events: list[Event] = []
    ts = 1_700_000_000.0
    for n in range(120):
        user = f"u{n}"
        phone = n % 3 == 0
        first, second = ("phone", "case") if phone else ("dress", "shoes")
        for k, item in enumerate((first, second)):
            ts += 10
            events.append(Event(f"e{n}-{k}", EventType.PURCHASE, user, ts, item_id=item))
    report = replay(events, [_trained([]), PopularityRecommender()], EvalParams(negatives=5))
    hybrid, popular = report.models["hybrid"], report.models["popularity"]
    # With four items both find the second purchase in the top 10; only the hybrid puts it
    # first (popularity ranks the popular dress-shop items above a phone buyer's case).
    assert hybrid.mrr > 0.95
    assert hybrid.ndcg > popular.ndcg + 0.1


def test_the_pairwise_ranker_learns_which_source_predicts_the_next_action() -> None:
    ranker = OnlineRanker(learning_rate=0.2)
    for n in range(200):
        # The user always acts on the content candidate, never on the MF one.
        content = CandidateFeatures(f"c{n}", {Source.CONTENT: 0.6}, history=3)
        mf = CandidateFeatures(f"m{n}", {Source.MF: 0.9}, history=3)
        assert ranker.learn([mf, content], acted_on=content.item_id) == 1
    content, mf = (
        CandidateFeatures("c", {Source.CONTENT: 0.6}, 3),
        CandidateFeatures("m", {Source.MF: 0.9}, 3),
    )
    score_content, score_mf = ranker.score([content, mf])
    assert score_content > score_mf
    assert ranker.learn([mf], acted_on="elsewhere") == 0  # not a candidate: nothing to learn
