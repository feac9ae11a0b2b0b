"""Why an item is or is not recommended (models/why.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.recommend import (
    Candidate,
    Reason,
    RecommendParams,
    Source,
    candidate_pools,
    source_pools,
)
from models.state import UserView
from models.why import Why, explain


def _view(bought: frozenset[str] = frozenset(), hidden: frozenset[str] = frozenset()) -> UserView:
    return UserView(
        "u1",
        recent=(("phone", 2.0),),
        neighbours={"phone": (("case", 0.5), ("charger", 0.25), ("cable", 0.1))},
        seen=frozenset({"phone"}),
        bought=bought,
        hidden=hidden,
    )


def _why(
    item: str,
    view: UserView,
    params: RecommendParams,
    published: Sequence[Mapping[str, Any]] = (),
) -> Why:
    extra = source_pools({Source.MF: [Candidate("tv", 0.0, (Reason("taste_match", 0.0),))]})
    return explain(item, view, params, candidate_pools(view, params, 0.0, extra), list(published))


def test_an_item_in_the_published_list_is_explained_by_that_list() -> None:
    published = [
        {"item_id": "x", "score": 1.0, "source": "popular", "sources": {"popular": 1.0}},
        {
            "item_id": "case",
            "score": 0.5,
            "source": "item_cf",
            "sources": {"item_cf": 0.5},
            "reasons": [{"item_id": "phone", "contribution": 0.5}],
        },
    ]
    why = _why("case", _view(), RecommendParams(top_n=2), published)
    assert why.status == "recommended"
    assert why.position == 2
    assert why.sources == {"item_cf": 0.5}
    assert why.reasons == ({"item_id": "phone", "contribution": 0.5},)


def test_every_filter_that_removes_an_item_is_named() -> None:
    view = _view(bought=frozenset({"phone", "case"}), hidden=frozenset({"cable"}))
    params = RecommendParams(exclude_items=frozenset({"charger"}))
    assert _why("phone", view, params).exclusions == ("bought", "seen")
    assert _why("case", view, params).status == "excluded"
    assert _why("case", view, params).exclusions == ("bought",)
    assert _why("cable", view, params).exclusions == ("hidden",)
    assert _why("charger", view, params).exclusions == ("excluded",)
    # Seen only counts while the seen filter is on.
    assert _why("phone", _view(), RecommendParams(exclude_seen=False)).status != "excluded"


def test_an_item_no_source_proposes_is_not_a_candidate() -> None:
    why = _why("sofa", _view(), RecommendParams())
    assert why.status == "not_a_candidate"
    assert why.position is None


def test_a_candidate_below_the_cut_gets_its_rank_and_the_score_it_needed() -> None:
    why = _why("cable", _view(), RecommendParams(top_n=2))
    assert why.status == "below_cut"
    assert why.position == 3
    assert why.score is not None
    assert why.cut_score is not None
    assert why.score < why.cut_score
    assert why.sources == {"item_cf": why.score}
    assert why.reasons[0]["item_id"] == "phone"


def test_a_candidate_within_the_cut_but_missing_from_the_list_is_not_shown() -> None:
    why = _why("case", _view(), RecommendParams(top_n=2), [{"item_id": "other"}])
    assert why.status == "not_shown"
    assert why.position == 1
