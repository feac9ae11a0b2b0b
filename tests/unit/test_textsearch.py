"""Search text analysis, the incremental index and re-ranking (models/textsearch.py)."""

from __future__ import annotations

import subprocess
import sys

from models.textsearch import Boosts, Match, TextIndex, analyse, concept_of, rerank, stem, words


def _concepts(text: str) -> list[str]:
    return [t.concept for t in analyse(text)]


def test_the_two_example_queries_mean_phone() -> None:
    assert analyse("I want to buy a smartphone")[0].text == "smartphone"
    assert _concepts("I want to buy a smartphone") == ["phone"]
    assert _concepts("我想买一个智能手机") == ["phone"]


def test_english_stop_words_plurals_and_case() -> None:
    assert _concepts("Please show me some PHONES and Cases") == ["phone", "case"]
    assert _concepts("wireless headphones") == ["wireless", "headphone"]
    assert stem("batteries") == "battery"
    assert stem("boxes") == "box"
    assert stem("glass") == "glass"


def test_chinese_segmentation_and_glued_stop_words() -> None:
    assert words("华为智能手机") == ["华为", "智能手机"]
    assert _concepts("我要买手机壳") == ["phone", "case"]
    assert _concepts("有没有便宜的手机") == ["便宜", "phone"]


def test_mixed_scripts_and_synonyms() -> None:
    assert _concepts("5G手机") == ["5g", "phone"]
    for word in ("smartphone", "phone", "mobile", "手机", "智能手机"):
        assert concept_of(word) == "phone", word
    assert concept_of("yoga") == "yoga"  # outside the synonym table: its own concept


def test_a_query_of_stop_words_only_matches_nothing() -> None:
    index = TextIndex()
    index.add("p1", title="Smartphone X")
    assert analyse("I want to buy a") == []
    assert index.search(analyse("我想买一个"), 5) == []


def _catalog() -> TextIndex:
    index = TextIndex()
    index.add("p1", title="Smartphone X", category="electronics/phones", brand="Acme")
    index.add("p2", title="5G 手机", category="electronics/phones", brand="华为")
    index.add("c1", title="Smartphone case", category="accessories", tags=["silicone"])
    index.add("m1", title="Cork Yoga Mat", category="sports/yoga-mats")
    return index


def test_both_example_queries_find_the_smartphones_first() -> None:
    index = _catalog()
    for query in ("I want to buy a smartphone", "我想买一个智能手机"):
        found = [m.item_id for m in index.search(analyse(query), 10)]
        assert found[:2] in (["p1", "p2"], ["p2", "p1"]), (query, found)
        assert "m1" not in found
        assert found[2] == "c1"  # a case matches the word but is not a phone


def test_matching_more_of_the_query_ranks_first() -> None:
    index = _catalog()
    found = index.search(analyse("silicone smartphone case"), 10)
    assert found[0].item_id == "c1"
    assert found[0].coverage == 1.0
    assert set(found[0].matched) == {"silicone", "smartphone", "case"}


def test_the_index_is_incremental() -> None:
    index = _catalog()
    index.add("p1", title="Yoga block")  # replaced: no longer a phone
    assert "p1" not in [m.item_id for m in index.search(analyse("phone"), 10)]
    assert index.remove("m1")
    assert not index.remove("m1")
    assert [m.item_id for m in index.search(analyse("yoga"), 10)] == ["p1"]
    assert len(index) == 3
    index.remove("p1")
    assert "block" not in index.postings  # empty postings are dropped


def test_boosts_reorder_equally_relevant_matches_but_never_beat_coverage() -> None:
    full = Match("full", 1.0, 1.0, ("phone", "case"))
    partial = Match("partial", 3.0, 0.5, ("phone",))
    twin = Match("twin", 1.0, 1.0, ("phone", "case"))
    boosts = Boosts(
        content={"partial": 1.0, "twin": 0.4},
        trending={"partial": 1.0},
        social={"partial": ["purchase", "share", "like"]},
    )
    ranked = rerank([partial, full, twin], boosts, 3)
    assert [r.item_id for r in ranked] == ["twin", "full", "partial"]
    assert ranked[0].boosts == (("content", 0.2),)
    assert dict(ranked[2].boosts) == {"content": 0.5, "trending": 0.25, "social": 0.25}


def test_load_loads_the_dictionary_up_front() -> None:
    """In a fresh interpreter (this one's tests may have loaded it already): importing the
    module leaves jieba's dictionary for later, ``load`` loads it (the worker calls it before
    its first batch)."""
    script = (
        "import jieba\n"
        "from models import textsearch\n"
        "assert not jieba.dt.initialized\n"
        "textsearch.load()\n"
        "assert jieba.dt.initialized\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
