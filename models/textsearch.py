"""Natural-language product search over the catalogue, in English and Chinese.

Why its own tokeniser (not :func:`models.content.tokenize`): content vectors want every
character pair of a Chinese title, search wants *words*, so that "我想买一个智能手机" means
"智能手机" and not "想买" or "一个". Chinese runs are segmented by jieba (precise mode; its
dictionary loads once, on first use, from the installed package); other text is split into
letter/digit words, lower-cased, with plurals stripped by a few suffix rules.

Both a query and an item become *concepts*: stop words ("i want to buy a", "我想买一个") go,
and a small hand-written synonym table (:data:`SYNONYM_GROUPS`, deliberately minimal) maps
"smartphone", "phone", "mobile", "手机", "智能手机" to one concept, so each matches the others.

The index (:class:`TextIndex`) is incremental (add, replace, remove one item at a time) and
scores an item by the concepts it shares with the query, each weighted by its rarity (idf) and
by the fields it appears in (a category match counts more than a tag). :func:`rerank` then
multiplies in the user's live signals (content profile, trending, social proof), keeping
"matches more of the query" above any boost.

>>> analyse("I want to buy a smartphone")
[Term(text='smartphone', concept='phone')]
>>> analyse("我想买一个智能手机")
[Term(text='智能手机', concept='phone')]
>>> index = TextIndex()
>>> index.add("p1", title="Smartphone X", category="electronics/phones")
>>> index.add("p2", title="5G 手机", category="electronics/phones")
>>> index.add("c1", title="Smartphone case", category="accessories")
>>> index.add("m1", title="Yoga mat", category="sports")
>>> [m.item_id for m in index.search(analyse("我想买一个智能手机"), 10)]
['p1', 'p2', 'c1']
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import jieba

jieba.setLogLevel(logging.WARNING)

#: Words that carry no product meaning in a shopping query (English).
_EN_STOPS: Final = """
    a about am an and any are as at be buy buying can could do does for from get give go have
    has help i i'm im in is it looking look me my need new of on one or please purchase search
    searching show so some something that the this to wanna want wants we with would you
    like find order
"""
STOP_WORDS_EN: Final = frozenset(_EN_STOPS.split())

#: The same for Chinese (jieba's segments of typical shopping phrases).
_ZH_STOPS: Final = """
    我 我们 想 想要 要 我要 买 想买 购买 买个 一个 一 个 一款 一台 一部 的 了 吗 呢 吧 啊 请 帮 帮我
    给 给我 找 找找 有 有没有 没有 推荐 一下 需要 和 与 在 是 些 一些 什么 哪个 看看
"""
STOP_WORDS_ZH: Final = frozenset(_ZH_STOPS.split())

#: Concept -> words that mean it. Minimal on purpose (the query examples and a few common
#: goods); a word outside every group is its own concept.
SYNONYM_GROUPS: Final[Mapping[str, tuple[str, ...]]] = {
    "phone": ("phone", "smartphone", "cellphone", "mobile", "手机", "智能手机", "移动电话"),
    "laptop": ("laptop", "notebook", "笔记本", "笔记本电脑"),
    "headphone": ("headphone", "earphone", "earbud", "headset", "耳机"),
    "tv": ("tv", "television", "电视", "电视机"),
    "shoe": ("shoe", "sneaker", "鞋", "鞋子", "运动鞋"),
    "watch": ("watch", "smartwatch", "手表"),
    "case": ("case", "cover", "壳", "手机壳"),
    "lipstick": ("lipstick", "口红"),
}
_CONCEPT: Final[Mapping[str, str]] = {
    word: concept for concept, words in SYNONYM_GROUPS.items() for word in words
}

#: What a match in each catalogue field is worth (the category says what an item *is*).
FIELD_WEIGHTS: Final[Mapping[str, float]] = {
    "title": 1.0,
    "category": 1.2,
    "brand": 1.0,
    "tags": 0.8,
}

_WORD: Final = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x3400 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x2FA1F


def stem(word: str) -> str:
    """Strip an English plural; anything else (other scripts, short words) is left alone.

    >>> [stem(w) for w in ["phones", "batteries", "watches", "glasses", "cases", "bus", "5g"]]
    ['phone', 'battery', 'watch', 'glass', 'case', 'bus', '5g']
    """
    if len(word) <= 3 or not word.isascii() or not word.isalpha():
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def load() -> None:
    """Load jieba's dictionary now (about half a second of CPU, the first segmentation's
    otherwise). A process that serves queries calls it before its hot work, so neither the
    first query nor the worker's first batches share the CPU with it."""
    jieba.initialize()


def words(text: str) -> list[str]:
    """Lower-cased words of any script: Chinese runs segmented by jieba, the rest split on
    anything that is not a letter or digit (stop words are kept: see :func:`analyse`).

    >>> words("5G手机, Smartphone-X!")
    ['5g', '手机', 'smartphone', 'x']
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    out: list[str] = []
    for run in re.split(r"([\u3400-\u9fff\uf900-\ufaff]+)", folded):
        if not run:
            continue
        if _is_cjk(run[0]):
            out.extend(w for w in jieba.lcut(run, HMM=True) if w.strip())
        else:
            out.extend(_WORD.findall(run))
    return out


@dataclass(frozen=True, slots=True)
class Term:
    """A word of the text as written (lower-cased) and the concept it is matched by."""

    text: str
    concept: str


def concept_of(word: str) -> str:
    """The concept a word stands for (its synonym group, else its stem).

    >>> concept_of("phones"), concept_of("手机"), concept_of("mat")
    ('phone', 'phone', 'mat')
    """
    stemmed = stem(word)
    return _CONCEPT.get(word, _CONCEPT.get(stemmed, stemmed))


_ZH_PREFIXES: Final = tuple(sorted(STOP_WORDS_ZH, key=len, reverse=True))


def strip_zh_stops(word: str) -> str:
    """Drop stop words glued to the front of a Chinese word (jieba keeps "买手机" whole).

    >>> strip_zh_stops("买手机"), strip_zh_stops("要买手机"), strip_zh_stops("手机")
    ('手机', '手机', '手机')
    """
    changed = True
    while changed and word and _is_cjk(word[0]):
        changed = False
        for prefix in _ZH_PREFIXES:
            if len(word) > len(prefix) and word.startswith(prefix):
                word, changed = word[len(prefix) :], True
                break
    return word


def analyse(text: str) -> list[Term]:
    """The meaningful terms of a query or field, in order, each concept once.

    >>> [t.text for t in analyse("我要买手机壳")]
    ['手机', '壳']
    """
    seen: set[str] = set()
    terms: list[Term] = []
    for raw in words(text):
        if raw in STOP_WORDS_EN or raw in STOP_WORDS_ZH:
            continue
        word = raw if raw in _CONCEPT else strip_zh_stops(raw)
        concept = concept_of(word)
        if concept not in seen:
            seen.add(concept)
            terms.append(Term(word, concept))
    return terms


@dataclass(frozen=True, slots=True)
class Match:
    """An item that shares concepts with the query: ``matched`` are the query's words it
    matched, ``coverage`` the share of the query's concepts, ``score`` the idf-weighted sum."""

    item_id: str
    score: float
    coverage: float
    matched: tuple[str, ...]


@dataclass
class TextIndex:
    """An inverted index of catalogue text: concept -> {item: field weight}.

    Incremental: :meth:`add` replaces an item's previous entry, :meth:`remove` drops it, so a
    worker can follow the catalogue's change stream without rebuilding.
    """

    postings: dict[str, dict[str, float]] = field(default_factory=dict)
    _items: dict[str, dict[str, float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def add(
        self,
        item_id: str,
        *,
        title: str = "",
        category: str = "",
        brand: str = "",
        tags: Iterable[str] = (),
    ) -> None:
        self.remove(item_id)
        fields = {
            "title": title,
            "category": category.replace("/", " ").replace(">", " "),
            "brand": brand,
            "tags": " ".join(tags),
        }
        weights: dict[str, float] = {}
        for name, text in fields.items():
            for term in analyse(text):
                weights[term.concept] = weights.get(term.concept, 0.0) + FIELD_WEIGHTS[name]
        self._items[item_id] = weights
        for concept, weight in weights.items():
            self.postings.setdefault(concept, {})[item_id] = weight

    def remove(self, item_id: str) -> bool:
        weights = self._items.pop(item_id, None)
        if weights is None:
            return False
        for concept in weights:
            posting = self.postings.get(concept)
            if posting is not None:
                posting.pop(item_id, None)
                if not posting:
                    del self.postings[concept]
        return True

    def search(self, query: Sequence[Term], k: int) -> list[Match]:
        """The best ``k`` items: most query concepts matched first, then by score."""
        concepts = {t.concept: t.text for t in query}
        if not concepts:
            return []
        total = len(self._items) or 1
        scores: dict[str, float] = {}
        matched: dict[str, list[str]] = {}
        for concept, text in concepts.items():
            posting = self.postings.get(concept)
            if not posting:
                continue
            idf = math.log(1.0 + total / len(posting))
            for item_id, weight in posting.items():
                scores[item_id] = scores.get(item_id, 0.0) + idf * weight
                matched.setdefault(item_id, []).append(text)
        ranked = sorted(scores, key=lambda i: (-len(matched[i]), -scores[i], i))[:k]
        return [
            Match(i, scores[i], len(matched[i]) / len(concepts), tuple(matched[i])) for i in ranked
        ]


@dataclass(frozen=True, slots=True)
class Boosts:
    """What re-ranks matches for one user: each in [0, 1] (or missing)."""

    content: Mapping[str, float] = field(default_factory=dict)  # profile cosine
    trending: Mapping[str, float] = field(default_factory=dict)  # share of the top count
    social: Mapping[str, Sequence[str]] = field(default_factory=dict)  # actions of people known


#: How much each signal can lift a match's relevance (relative).
BOOST_WEIGHTS: Final[Mapping[str, float]] = {"content": 0.5, "trending": 0.25, "social": 0.25}


@dataclass(frozen=True, slots=True)
class Ranked:
    item_id: str
    score: float
    relevance: float
    matched: tuple[str, ...]
    boosts: tuple[tuple[str, float], ...]  # (signal, added relative lift), strongest first
    social_actions: tuple[str, ...] = ()


def rerank(matches: Sequence[Match], boosts: Boosts, k: int) -> list[Ranked]:
    """Relevance (score over the best match's) times ``1 + Σ weight · signal``; items matching
    more of the query stay above those matching less, whatever their boosts.

    >>> ms = [Match("a", 2.0, 1.0, ("phone",)), Match("b", 2.0, 1.0, ("phone",))]
    >>> [r.item_id for r in rerank(ms, Boosts(trending={"b": 1.0}), 2)]
    ['b', 'a']
    >>> rerank(ms, Boosts(trending={"b": 1.0}), 1)[0].boosts
    (('trending', 0.25),)
    """
    best = max((m.score for m in matches), default=0.0)
    out: list[tuple[tuple[float, float, str], Ranked]] = []
    for m in matches:
        relevance = m.score / best if best > 0 else 0.0
        social = boosts.social.get(m.item_id, ())
        signals = {
            "content": max(0.0, min(1.0, boosts.content.get(m.item_id, 0.0))),
            "trending": max(0.0, min(1.0, boosts.trending.get(m.item_id, 0.0))),
            "social": min(1.0, len(social) / 3.0),
        }
        lifts = {s: BOOST_WEIGHTS[s] * v for s, v in signals.items() if v > 0.0}
        score = relevance * (1.0 + sum(lifts.values()))
        ranked = Ranked(
            m.item_id,
            score,
            relevance,
            m.matched,
            tuple(sorted(((s, round(v, 6)) for s, v in lifts.items()), key=lambda sv: -sv[1])),
            tuple(social),
        )
        out.append(((-m.coverage, -score, m.item_id), ranked))
    out.sort(key=lambda pair: pair[0])
    return [r for _, r in out[:k]]
