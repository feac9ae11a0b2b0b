"""Content model (models/content/): features, similarity, profiles, decay, erasure, speed."""

from __future__ import annotations

import math
import time
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.content import (
    ContentModel,
    SparseVector,
    hash_feature,
    item_features,
    parse_record,
    tokenize,
)
from models.simulator import generate_world

NOW = 1_700_000_000.0
HOUR = 3600.0
FAST = settings(max_examples=40, deadline=None)

PHONE = {
    "item_id": "phone",
    "title": "华为 智能手机 256GB",
    "category": "electronics/phones",
    "brand": "Huawei",
    "merchant_id": "m1",
    "price": 499.0,
    "tags": ["electronics", "phones", "5g"],
}
PHONE2 = {**PHONE, "item_id": "phone2", "title": "华为 智能手机 128GB", "price": 399.0}
CASE = {
    "item_id": "case",
    "title": "Huawei phone case",
    "category": "electronics/phone-accessories",
    "brand": "Huawei",
    "merchant_id": "m1",
    "price": 9.99,
    "tags": ["electronics", "phones"],
}
MAT = {
    "item_id": "mat",
    "title": "Manduka Cork Yoga Mat 4mm",
    "category": "sports/yoga-mats",
    "brand": "Manduka",
    "merchant_id": "m18",
    "price": 56.99,
    "tags": ["sports", "eco"],
}
SHOE = {
    "item_id": "shoe",
    "title": "Trail running shoe",
    "category": "sports/running",
    "brand": "Salomon",
    "merchant_id": "m7",
    "price": 120.0,
    "tags": ["sports", "outdoor"],
}


def _model(*records: dict[str, object], **params: float) -> ContentModel:
    model = ContentModel(**params)  # type: ignore[arg-type]
    for record in records:
        model.add_item(record)
    return model


def _cos(model: ContentModel, a: str, b: str) -> float:
    va, vb = model.item_vector(a), model.item_vector(b)
    assert va is not None
    assert vb is not None
    return va.dot(vb)


# ---- tokens and features ------------------------------------------------------------------
def test_chinese_titles_tokenise_to_characters_and_pairs() -> None:
    tokens = tokenize("华为 智能手机")
    assert {"华为", "手机", "智能", "华", "机"} <= set(tokens)
    assert tokenize("iPhone15手机壳") == ["iphone15", "手", "机", "壳", "手机", "机壳"]
    assert tokenize("ソニー") == ["ソ", "ニ", "ー", "ソニ", "ニー"]


def test_other_scripts_keep_whole_words() -> None:
    assert tokenize("Смартфон Xiaomi, 128 ГБ") == ["смартфон", "xiaomi", "128", "гб"]
    assert tokenize("हिन्दी किताब") == ["हिन्दी", "किताब"]  # combining marks stay in the word
    assert tokenize("  ...  ") == []


@FAST
@given(st.text(max_size=60))
def test_tokens_are_never_empty_never_repeated_never_contain_spaces(text: str) -> None:
    tokens = tokenize(text)
    assert len(tokens) == len(set(tokens))
    assert all(token and not any(ch.isspace() for ch in token) for token in tokens)


def test_hashing_is_stable_across_processes() -> None:
    # A constant, so a switch to Python's per-process hash() (or any other change that would
    # silently invalidate every stored profile) fails here.
    assert hash_feature("brand\x1fhuawei", 2**18) == (48103, -1.0)


def test_every_field_contributes_its_weight() -> None:
    features = item_features(parse_record(PHONE))
    for field, weight in [("category", 1.0), ("brand", 0.8), ("merchant", 0.4), ("tags", 1.0)]:
        norm = math.sqrt(sum(v * v for k, v in features.items() if k.startswith(field + "\x1f")))
        assert math.isclose(norm, weight)
    assert "title\x1f华为" in features
    assert "category\x1felectronics" in features  # the parent level is shared by siblings


records = st.fixed_dictionaries(
    {"item_id": st.text(min_size=1, max_size=8)},
    optional={
        "title": st.text(max_size=40),
        "category": st.text(max_size=20),
        "brand": st.text(max_size=10),
        "merchant_id": st.text(max_size=5),
        "price": st.floats(min_value=0.0, max_value=1e7),
        "tags": st.lists(st.text(max_size=10), max_size=20),
    },
)


@FAST
@given(records)
def test_item_vectors_are_unit_length_or_empty(record: dict[str, object]) -> None:
    model = _model(record)
    vector = model.item_vector(str(record["item_id"]))
    assert vector is not None
    assert len(vector.indices) <= model.max_features
    assert np.all(np.diff(vector.indices) > 0)
    assert vector.norm() == 0.0 or math.isclose(vector.norm(), 1.0, rel_tol=1e-5)


def test_malformed_records_are_rejected_naming_the_field() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"title": "x"}, "item_id"),
        ({"item_id": ""}, "item_id"),
        ({"item_id": "a", "price": -1}, "price"),
        ({"item_id": "a", "price": math.inf}, "price"),
        ({"item_id": "a", "tags": "red"}, "tags"),
        ({"item_id": "a", "brand": 3.5}, "brand"),
    ]
    for bad, field in cases:
        with pytest.raises(ValueError, match=field):
            parse_record(bad)


# ---- similarity ---------------------------------------------------------------------------
def test_items_sharing_category_brand_and_tags_are_more_similar() -> None:
    model = _model(PHONE, PHONE2, CASE, MAT, SHOE)
    assert _cos(model, "phone", "phone2") > _cos(model, "phone", "case")
    assert _cos(model, "phone", "case") > _cos(model, "phone", "mat")
    assert _cos(model, "mat", "shoe") > _cos(model, "mat", "phone")
    assert abs(_cos(model, "phone", "mat")) < 0.05  # nothing in common
    assert [i for i, _ in model.similar_items("phone", 2)] == ["phone2", "case"]


def test_simulated_catalogue_neighbours_share_their_category() -> None:
    world = generate_world(seed=3, users=10, items=400)
    model = ContentModel()
    for item in world.items:
        model.add_item(
            {
                "item_id": item.item_id,
                "title": item.title,
                "category": item.category,
                "brand": item.brand,
                "merchant_id": item.merchant_id,
                "price": item.price,
                "tags": list(item.tags),
            }
        )
    category = {item.item_id: item.category for item in world.items}
    same = total = 0
    for item in world.items[:100]:
        for neighbour, _ in model.similar_items(item.item_id, 5):
            same += category[neighbour] == item.category
            total += 1
    print(f"\nsimulated catalogue: {same / total:.0%} of top-5 neighbours share the category")
    assert total == 500
    assert same / total > 0.8


@FAST
@given(st.lists(records, min_size=2, max_size=6, unique_by=lambda r: r["item_id"]))
def test_similarity_is_symmetric_and_a_cosine(batch: list[dict[str, object]]) -> None:
    model = _model(*batch)
    for a, b in combinations(model.item_ids(), 2):
        assert -1.0 - 1e-6 <= _cos(model, a, b) <= 1.0 + 1e-6
        assert math.isclose(_cos(model, a, b), _cos(model, b, a), abs_tol=1e-6)
    for item in model.item_ids():
        for _, score in model.similar_items(item, 10):
            assert 0.0 < score <= 1.0


@FAST
@given(st.lists(records, min_size=2, max_size=8, unique_by=lambda r: r["item_id"]), st.data())
def test_scores_of_some_items_equal_the_same_items_scored_with_all(
    batch: list[dict[str, object]], data: st.DataObject
) -> None:
    # Candidate scores and explanations score a few items, top-k scores every item: the two
    # paths must give an item the same bits, or a shown score could disagree with its rank.
    model = _model(*batch)
    items = list(model.item_ids())
    liked = data.draw(st.lists(st.sampled_from(items), min_size=1, max_size=3))
    for n, item in enumerate(liked):
        model.update_profile("ann", item, 1.0 + n, NOW + n)
    everyone = dict(model.top_k("ann", len(items), now=NOW + 9))
    some = data.draw(st.lists(st.sampled_from(items), min_size=1, max_size=len(items)))
    for item, score in zip(some, model.score("ann", some, now=NOW + 9), strict=True):
        if score > 0.0:
            assert everyone[item] == score  # exactly
        else:
            assert item not in everyone
    for item in some:
        similar = dict(model.similar_items(item, len(items)))
        for other, s in zip(items, model.similarities(item, items), strict=True):
            if other in similar:
                assert s == similar[other]  # exactly


def test_a_new_item_has_neighbours_the_moment_its_record_arrives() -> None:
    model = _model(PHONE, CASE, MAT, SHOE)
    assert "phone2" not in model
    model.add_item(PHONE2)
    assert model.similar_items("phone2", 1)[0][0] == "phone"
    assert "phone2" in [i for i, _ in model.similar_items("phone", 3)]


def test_removed_items_disappear_and_the_others_keep_their_vectors() -> None:
    model = _model(PHONE, PHONE2, CASE, MAT, SHOE)
    before = {i: model.item_vector(i) for i in ("phone2", "shoe")}
    assert model.remove_item("phone")
    assert not model.remove_item("phone")
    assert "phone" not in [i for i, _ in model.similar_items("phone2", 5)]
    assert model.item_vector("phone") is None
    for item, vector in before.items():
        now = model.item_vector(item)
        assert vector is not None
        assert now is not None
        assert np.array_equal(now.indices, vector.indices)
        assert np.array_equal(now.values, vector.values)


# ---- profiles -----------------------------------------------------------------------------
def test_profile_prefers_the_taste_it_was_built_from() -> None:
    model = _model(PHONE, PHONE2, CASE, MAT, SHOE)
    assert model.update_profile("ann", "phone", 8.0, NOW)
    top = model.top_k("ann", 5, exclude={"phone"}, now=NOW)
    assert [i for i, _ in top][:2] == ["phone2", "case"]
    assert {"mat", "shoe"}.isdisjoint(i for i, s in top if s > 0.05)
    assert not model.update_profile("ann", "not-in-catalogue", 8.0, NOW)
    assert not model.update_profile("ann", "mat", 0.0, NOW)


def test_negative_weights_push_away() -> None:
    model = _model(PHONE, PHONE2, CASE, MAT, SHOE)
    model.update_profile("bob", "mat", 3.0, NOW)
    model.update_profile("bob", "phone", -10.0, NOW)  # hide
    scores = model.score("bob", ["phone", "phone2", "mat"], now=NOW)
    assert scores[0] < 0
    assert scores[1] < 0 < scores[2]
    assert "phone2" not in [i for i, _ in model.top_k("bob", 5, now=NOW)]


def test_profile_decays_with_time() -> None:
    model = _model(PHONE, MAT, half_life_s=HOUR)
    model.update_profile("cat", "phone", 4.0, NOW)
    assert math.isclose(model.profile_strength("cat", NOW + HOUR), 2.0)
    assert math.isclose(model.profile_strength("cat", NOW + 2 * HOUR), 1.0)

    # Equal weights, but the phone is two half-lives older: it counts a quarter as much.
    model.update_profile("cat", "mat", 4.0, NOW + 2 * HOUR)
    phone, mat = model.score("cat", ["phone", "mat"], now=NOW + 2 * HOUR)
    assert mat > phone > 0
    assert math.isclose(phone / mat, 0.25, rel_tol=0.05)
    vector = model.profile_vector("cat", NOW + 3 * HOUR)
    earlier = model.profile_vector("cat", NOW + 2 * HOUR)
    assert vector is not None
    assert earlier is not None
    assert math.isclose(vector.norm(), earlier.norm() / 2, rel_tol=1e-5)


def test_late_events_count_for_less_and_do_not_rewind_the_profile() -> None:
    model = _model(PHONE, MAT, half_life_s=HOUR)
    model.update_profile("dan", "mat", 4.0, NOW + HOUR)
    model.update_profile("dan", "phone", 4.0, NOW)  # arrives late, an hour older
    phone, mat = model.score("dan", ["phone", "mat"], now=NOW + HOUR)
    assert math.isclose(phone / mat, 0.5, rel_tol=0.05)
    assert math.isclose(model.profile_strength("dan", NOW + HOUR), 6.0)


def test_a_stale_profile_is_treated_as_cold() -> None:
    model = _model(PHONE, PHONE2, half_life_s=HOUR, min_strength=0.5)
    model.update_profile("eve", "phone", 1.0, NOW)
    assert model.top_k("eve", 3, now=NOW)
    later = NOW + 2 * HOUR  # strength 0.25 < 0.5
    assert model.top_k("eve", 3, now=later) == []
    assert not model.score("eve", ["phone2"], now=later).any()


def test_forget_user_removes_the_profile() -> None:
    model = _model(PHONE, PHONE2, CASE)
    model.update_profile("fay", "phone", 8.0, NOW)
    assert model.forget_user("fay")
    assert "fay" not in model.user_ids()
    assert model.export_profile("fay") is None
    assert model.profile_vector("fay", NOW) is None
    assert model.profile_strength("fay", NOW) == 0.0
    assert not model.score("fay", ["phone2"], now=NOW).any()
    assert model.top_k("fay", 3, now=NOW) == []
    assert not model.forget_user("fay")


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["phone", "phone2", "case", "mat", "shoe"]),
            st.sampled_from([1.0, 3.0, 4.0, 5.0, 8.0, -10.0]),
            st.floats(min_value=0.0, max_value=30 * 86_400.0),
        ),
        max_size=30,
    )
)
def test_profiles_round_trip_exactly(actions: list[tuple[str, float, float]]) -> None:
    model = _model(PHONE, PHONE2, CASE, MAT, SHOE, profile_size=8)
    for item, weight, offset in actions:
        model.update_profile("gus", item, weight, NOW + offset)
    raw = model.export_profile("gus")
    if raw is None:
        assert not actions
        return
    restored = _model(PHONE, PHONE2, CASE, MAT, SHOE, profile_size=8)
    restored.import_profile("gus", raw)
    assert restored.export_profile("gus") == raw
    items = list(model.item_ids())
    later = NOW + 31 * 86_400.0
    assert np.array_equal(model.score("gus", items, later), restored.score("gus", items, later))
    scores = model.score("gus", items, later)
    assert np.all(np.isfinite(scores))
    assert np.all(np.abs(scores) <= 1.0)


def test_bad_profile_blobs_are_rejected() -> None:
    model = _model(PHONE)
    model.update_profile("hal", "phone", 1.0, NOW)
    raw = model.export_profile("hal")
    assert raw is not None
    with pytest.raises(ValueError, match="slots"):
        ContentModel(dim=2**10).import_profile("hal", raw)
    with pytest.raises(ValueError, match="length"):
        model.import_profile("hal", raw[:-1])
    with pytest.raises(ValueError, match="not a content profile"):
        model.import_profile("hal", b"XXXX" + raw[4:])


# ---- vectorised scoring -------------------------------------------------------------------
def test_ten_thousand_candidates_score_in_one_call() -> None:
    model = ContentModel()
    brands = ["Huawei", "Xiaomi", "Sony", "Anker", "Manduka", "Salomon", "Nike"]
    categories = ["electronics/phones", "electronics/audio", "sports/yoga", "sports/running"]
    for k in range(10_000):
        model.add_item(
            {
                "item_id": f"i{k}",
                "title": f"{brands[k % 7]} model {k % 97} 智能 {k % 13}",
                "category": categories[k % 4],
                "brand": brands[k % 7],
                "merchant_id": f"m{k % 31}",
                "price": 1.0 + (k * 7.3) % 900,
                "tags": [f"t{k % 11}", f"t{k % 17}"],
            }
        )
    for k in range(20):
        model.update_profile("ivy", f"i{k * 4}", 3.0, NOW + k)
    candidates = [f"i{k}" for k in range(9_995)] + [f"unknown{k}" for k in range(5)]

    started = time.perf_counter()
    scores = model.score("ivy", candidates, now=NOW + 100)
    elapsed = time.perf_counter() - started
    assert scores.shape == (10_000,)
    assert np.all(np.isfinite(scores))
    assert np.all(np.abs(scores) <= 1.0)
    assert not scores[-5:].any()

    # The vectorised cosine equals the plain sparse one.
    profile = model.profile_vector("ivy", NOW + 100)
    assert profile is not None
    for k in (0, 1, 4, 999, 5_001):
        item = model.item_vector(f"i{k}")
        assert item is not None
        expected = profile.dot(item) / profile.norm()
        assert math.isclose(scores[k], expected, rel_tol=1e-4, abs_tol=1e-6)

    seen = [k * 4 for k in range(20)]
    top = model.top_k("ivy", 10, exclude={f"i{k}" for k in seen}, now=NOW + 100)
    assert len(top) == 10
    assert not {f"i{k}" for k in seen} & {item for item, _ in top}
    unseen = np.delete(scores[:9_995], seen)
    assert math.isclose(top[0][1], float(unseen.max()), rel_tol=1e-6)
    assert math.isclose(top[-1][1], float(np.sort(unseen)[-10]), rel_tol=1e-6)
    print(f"\ncontent: scored 10,000 candidates in {elapsed * 1e3:.2f} ms")


def test_sparse_vector_dot_matches_dense() -> None:
    a = SparseVector(np.array([1, 5, 9], np.int32), np.array([1.0, 2.0, 3.0], np.float32))
    b = SparseVector(np.array([0, 5, 9], np.int32), np.array([4.0, 0.5, -1.0], np.float32))
    assert a.dot(b) == pytest.approx(2.0 * 0.5 - 3.0)
    assert a.norm() == pytest.approx(math.sqrt(14.0))


@settings(max_examples=60, deadline=None)
@given(
    categories=st.lists(st.sampled_from("abc"), min_size=1, max_size=60),
    k=st.integers(1, 12),
    excluded=st.integers(0, 5),
)
def test_top_k_among_many_ties_is_best_first_then_by_id(
    categories: list[str], k: int, excluded: int
) -> None:
    # A catalogue whose only feature is a category: whole categories tie. The ranking must be
    # the full sort by (-score, id) cut at k, whichever way _best picks among the tied.
    model = ContentModel()
    ids = [f"i{(n * 7919) % 1000:03d}-{n}" for n in range(len(categories))]
    for item_id, category in zip(ids, categories, strict=True):
        model.add_item({"item_id": item_id, "category": category})
    model.update_profile("u", ids[0], 1.0, 0.0)
    exclude = set(ids[1 : 1 + excluded])
    got = model.top_k("u", k, exclude, now=0.0)
    scores = model.score("u", ids, 0.0)
    full = sorted(
        (-float(s), i) for i, s in zip(ids, scores, strict=True) if s > 0 and i not in exclude
    )
    assert [i for i, _ in got] == [i for _, i in full[:k]]
