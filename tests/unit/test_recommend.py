"""Ranking properties: never an excluded item, explained scores, popular fallback."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from models.events import Event, EventType
from models.recommend import (
    Ranking,
    RecommendParams,
    Source,
    excluded_items,
    recommend,
)
from models.recommend.blend import normalise
from models.recommend.pools import item_cf_scores, item_cf_terms, social_scores
from models.state import StateParams
from tests.unit.reference import Reference
from tests.unit.strategies import event_streams

READ = {"recent_items": 20, "neighbours": 20}


def _state(events: list[Event]) -> Reference:
    state = Reference(StateParams())
    state.apply_batch(events)
    return state


@given(event_streams(), st.booleans())
def test_bought_hidden_and_excluded_items_are_never_recommended(
    events: list[Event], exclude_seen: bool
) -> None:
    state = _state(events)
    params = RecommendParams(top_n=5, exclude_items=frozenset({"i0"}), exclude_seen=exclude_seen)
    for user_id in state.users:
        view = state.user_view(user_id, **READ)
        recs = recommend(view, state.popular(50), params, now=1_700_000_000.0)
        shown = {r.item_id for r in recs.items}
        assert not shown & view.bought
        assert not shown & view.hidden
        assert "i0" not in shown
        if exclude_seen:
            assert not shown & view.seen
        assert len(shown) == len(recs.items) <= 5  # no duplicates, at most top_n


@given(event_streams())
def test_scores_are_finite_ranked_and_explained(events: list[Event]) -> None:
    state = _state(events)
    params = RecommendParams()
    now = 1_700_000_000.0
    for user_id in state.users:
        view = state.user_view(user_id, **READ)
        recs = recommend(view, state.popular(50), params, now=now)
        ranked = [r for r in recs.items if r.source is not Source.POPULAR]
        assert all(math.isfinite(r.score) and r.score > 0 for r in recs.items)
        assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
        cf_totals, social = item_cf_scores(view), social_scores(view, params, now)
        cf = item_cf_terms(view, cf_totals)
        assert cf_totals == {i: sum(c for c, _ in p) for i, p in cf.items()}  # exactly
        raw = {
            Source.ITEM_CF: normalise({i: sum(c for c, _ in p) for i, p in cf.items()}),
            Source.SOCIAL: normalise({i: sum(c for c, _ in p) for i, p in social.items()}),
        }
        weights = dict(params.source_weights)
        recent = {i for i, _ in view.recent}
        for r in ranked:
            # Each source contributes its weight times its normalised score, the contributions
            # add up to the score, and each reason is the user's own item or a person they
            # know, with what that person did.
            for source, value in r.sources:
                assert math.isclose(value, weights[source] * raw[source][r.item_id])
            assert math.isclose(sum(v for _, v in r.sources), r.score)
            assert r.source == max(r.sources, key=lambda sv: sv[1])[0]
            assert r.reasons
            for reason in r.reasons:
                if reason.item_id is not None:
                    assert reason.item_id in recent
                else:
                    assert reason.user_id is not None
                    assert reason.action in ("share", "purchase", "like")
        assert recs.cold_start == (not view.recent)
        if recs.cold_start:
            assert not any(r.source is Source.ITEM_CF for r in recs.items)


def test_cold_start_user_gets_popular_items_marked_as_such() -> None:
    state = _state(
        [
            Event("e1", EventType.PURCHASE, "a", 1e9, item_id="hit"),
            Event("e2", EventType.VIEW, "b", 1e9, item_id="hit"),
            Event("e3", EventType.VIEW, "b", 1e9, item_id="other"),
        ]
    )
    view = state.user_view("newcomer", **READ)
    recs = recommend(view, state.popular(10), RecommendParams(top_n=3), now=1e9)
    assert recs.cold_start
    assert [r.item_id for r in recs.items] == ["hit", "other"]
    assert all(r.source is Source.POPULAR and not r.reasons for r in recs.items)


def test_co_purchased_item_is_recommended_because_of_the_users_item() -> None:
    events = []
    for n, user in enumerate(["a", "b", "c"]):
        events.append(Event(f"p{n}", EventType.PURCHASE, user, 1e9 + n, item_id="phone"))
        events.append(Event(f"c{n}", EventType.PURCHASE, user, 1e9 + n, item_id="case"))
    events.append(Event("x", EventType.VIEW, "d", 1e9 + 9, item_id="phone"))
    state = _state(events)
    recs = recommend(state.user_view("d", **READ), state.popular(10), RecommendParams(), now=1e9)
    top = recs.items[0]
    assert (top.item_id, top.source) == ("case", Source.ITEM_CF)
    assert top.reasons[0].item_id == "phone"


def test_a_share_and_a_followees_purchase_are_recommended_with_who_did_it() -> None:
    state = _state(
        [
            Event("f1", EventType.FOLLOW, "ann", 1e9, target_user_id="bob"),
            Event("p1", EventType.PURCHASE, "bob", 1e9 + 1, item_id="boots"),
            Event("s1", EventType.SHARE, "cat", 1e9 + 2, item_id="scarf", target_user_id="ann"),
        ]
    )
    recs = recommend(
        state.user_view("ann", **READ), state.popular(10), RecommendParams(), now=1e9 + 3
    )
    by_item = {r.item_id: r for r in recs.items}
    scarf, boots = by_item["scarf"], by_item["boots"]
    assert (scarf.source, boots.source) == (Source.SOCIAL, Source.SOCIAL)
    assert scarf.score > boots.score  # a share to you outweighs a followee's purchase
    assert [(r.user_id, r.action) for r in scarf.reasons] == [("cat", "share")]
    assert [(r.user_id, r.action) for r in boots.reasons] == [("bob", "purchase")]
    state.apply(Event("u1", EventType.UNFOLLOW, "ann", 1e9 + 4, target_user_id="bob"))
    recs = recommend(
        state.user_view("ann", **READ), state.popular(10), RecommendParams(), now=1e9 + 5
    )
    assert all(r.source is not Source.SOCIAL or r.item_id == "scarf" for r in recs.items)


def test_cold_start_falls_back_to_trending_then_popular() -> None:
    state = _state([Event("e1", EventType.PURCHASE, "a", 1e9, item_id="classic")])
    view = state.user_view("newcomer", **READ)
    recs = recommend(
        view,
        state.popular(10),
        RecommendParams(top_n=3),
        now=1e9,
        trending=[("live-hit", 12.0), ("classic", 3.0)],
    )
    assert recs.cold_start
    assert [(r.item_id, r.source) for r in recs.items] == [
        ("live-hit", Source.TRENDING),
        ("classic", Source.TRENDING),  # trending first; not repeated as popular
    ]


@given(event_streams(), st.integers(min_value=1, max_value=3))
def test_a_category_cap_diversifies_without_shortening_the_list(
    events: list[Event], cap: int
) -> None:
    state = _state(events)
    categories = {f"i{k}": f"c{k % 2}" for k in range(10)}  # two categories only
    for user_id in state.users:
        view = state.user_view(user_id, **READ)
        plain = recommend(view, state.popular(50), RecommendParams(top_n=5), now=1.7e9)
        capped = recommend(
            view,
            state.popular(50),
            RecommendParams(top_n=5, category_cap=cap),
            now=1.7e9,
            categories=categories,
        )
        assert len(capped.items) == len(plain.items)
        assert {r.item_id for r in capped.items} <= {r.item_id for r in plain.items} | set(
            categories
        )
        assert not {r.item_id for r in capped.items} & excluded_items(view, RecommendParams())


@given(
    event_streams(),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=0, max_value=2),
)
def test_the_cap_needs_the_categories_of_the_capped_items_only(
    events: list[Event], cap: int, top_n: int, explore_slots: int
) -> None:
    """The worker looks up only :meth:`Ranking.capped_items`: the same lists as with every
    category known, warm users and cold ones, with trending and exploration."""
    state = _state(events)
    items = sorted({e.item_id for e in events if e.item_id is not None})
    categories = {item: f"c{n % 3}" for n, item in enumerate(items)}  # every item known
    params = RecommendParams(top_n=top_n, category_cap=cap, explore_slots=explore_slots)
    trending = [(item, 4.0 - n) for n, item in enumerate(items[::5][:3])]
    for user_id in [*state.users, "nobody"]:
        view = state.user_view(user_id, **READ)
        popular = state.popular(50)
        full = recommend(view, popular, params, now=1.7e9, trending=trending, categories=categories)
        ranking = Ranking(view, popular, params, now=1.7e9, trending=trending)
        needed = ranking.capped_items()
        narrow = ranking.choose({i: c for i, c in categories.items() if i in needed})
        assert narrow == full


def test_the_category_cap_makes_room_for_other_categories() -> None:
    events = []
    for n, user in enumerate(["a", "b", "c"]):
        for item in ["phone", "case", "charger", "cable", "earbuds"]:
            events.append(Event(f"{user}{item}", EventType.PURCHASE, user, 1e9 + n, item_id=item))
    events.append(Event("d1", EventType.VIEW, "d", 1e9 + 9, item_id="phone"))
    state = _state(events)
    categories = {"case": "accessories", "charger": "accessories", "cable": "accessories"}
    categories["earbuds"] = "audio"
    view = state.user_view("d", **READ)
    capped = recommend(
        view,
        state.popular(10),
        RecommendParams(top_n=3, category_cap=2),
        now=1e9,
        categories=categories,
    )
    shown = [r.item_id for r in capped.items]
    assert "earbuds" in shown  # the third accessory gave way
    assert sum(categories[i] == "accessories" for i in shown) == 2


def test_a_cold_users_trending_item_that_a_friend_shared_keeps_the_friend_as_reason() -> None:
    state = _state(
        [Event("s1", EventType.SHARE, "ann", 1e9, item_id="scarf", target_user_id="zoe")]
    )
    view = state.user_view("zoe", **READ)
    recs = recommend(
        view, state.popular(10), RecommendParams(top_n=3), now=1e9 + 1, trending=[("scarf", 4.0)]
    )
    assert recs.cold_start
    scarf = recs.items[0]
    assert (scarf.item_id, scarf.source) == ("scarf", Source.SOCIAL)
    assert [(r.user_id, r.action) for r in scarf.reasons] == [("ann", "share")]
