"""A catalogue record's features: validated fields, tokens, and each field's weighted share.

Each field contributes a fixed share of the item vector however many tokens it has (a 30-word
title does not drown the category):

- ``category``: every level of the path (``electronics``, ``electronics/phones``), deeper
  levels weighing more, so siblings share their parent;
- ``brand``, ``merchant``: one token each;
- ``price``: soft log-scale bins: ``log(price) / log(price_base)`` split between its two nearest
  bin edges, so 59 and 61 are alike even across a bin edge;
- ``tags``: one token per tag;
- ``title``: lower-cased words (letters, digits and combining marks, any script); runs of CJK
  characters, which carry no spaces, become single characters plus adjacent pairs.

>>> tokenize("华为 智能手机")
['华', '为', '华为', '智', '能', '手', '机', '智能', '能手', '手机']
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

#: Share of each field in an item vector (before the final L2 normalisation).
DEFAULT_FIELD_WEIGHTS: Final[Mapping[str, float]] = {
    "category": 1.0,
    "brand": 0.8,
    "merchant": 0.4,
    "price": 0.5,
    "tags": 1.0,
    "title": 0.8,
}
FIELDS: Final = tuple(DEFAULT_FIELD_WEIGHTS)

MAX_TAGS: Final = 16
MAX_TITLE_TOKENS: Final = 32
_CATEGORY_SEPARATORS: Final = str.maketrans({c: "/" for c in ">|\\›»"})


def _is_cjk(ch: str) -> bool:
    """Scripts written without spaces between words: Han ideographs and Japanese kana."""
    code = ord(ch)
    return (
        0x3005 <= code <= 0x3007  # 々 〆 〇
        or 0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0x31F0 <= code <= 0x31FF  # katakana phonetic extensions
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0x20000 <= code <= 0x3134F  # extensions B..G and compatibility supplement
    )


def _cjk_tokens(run: str) -> list[str]:
    return [*run, *(run[k : k + 2] for k in range(len(run) - 1))]


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of any script, in order, without duplicates.

    A word is a run of letters, digits and combining marks (so Devanagari or Arabic words stay
    whole); everything else separates words. CJK runs become characters and character pairs,
    because those scripts do not put spaces between words. NFKC first folds full-width forms.

    >>> tokenize("Sennheiser Sport-Earbuds ＧＥＮ 2, sennheiser!")
    ['sennheiser', 'sport', 'earbuds', 'gen', '2']
    >>> tokenize("ソニー ヘッドホン")[:3]
    ['ソ', 'ニ', 'ー']
    >>> tokenize("Чехол для телефона")
    ['чехол', 'для', 'телефона']
    """
    tokens: list[str] = []
    word: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if word:
            tokens.append("".join(word))
            word.clear()
        if run:
            tokens.extend(_cjk_tokens("".join(run)))
            run.clear()

    for ch in unicodedata.normalize("NFKC", text).casefold():
        if _is_cjk(ch):
            if word:
                flush()
            run.append(ch)
        elif unicodedata.category(ch)[0] in "LNM":
            if run:
                flush()
            word.append(ch)
        else:
            flush()
    flush()
    return list(dict.fromkeys(tokens))


def _label(value: str) -> str:
    """A whole-string token (brand, tag, category level): folded and with spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


@dataclass(frozen=True, slots=True)
class CatalogRecord:
    """A validated catalogue entry; only ``item_id`` is required."""

    item_id: str
    title: str = ""
    category: str = ""
    brand: str = ""
    merchant_id: str = ""
    price: float | None = None
    tags: tuple[str, ...] = ()


def parse_record(record: Mapping[str, object]) -> CatalogRecord:
    """Check a catalogue record; a ``ValueError`` names the bad field, never its value.

    >>> parse_record({"item_id": 7, "price": "12"})
    Traceback (most recent call last):
    ...
    ValueError: field 'price' must be a finite number >= 0
    """

    def text(name: str, required: bool = False) -> str:
        value = record.get(name)
        if value is None or (value == "" and not required):
            if required:
                raise ValueError(f"missing field '{name}'")
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"field '{name}' must be a string")
        return str(value)

    price = record.get("price")
    if price is not None and (
        isinstance(price, bool)
        or not isinstance(price, int | float)
        or not math.isfinite(price)
        or price < 0
    ):
        raise ValueError("field 'price' must be a finite number >= 0")
    tags = record.get("tags") or ()
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise ValueError("field 'tags' must be a list of strings")
    if not all(isinstance(t, str) for t in tags):
        raise ValueError("field 'tags' must be a list of strings")
    item_id = text("item_id", required=True)
    if not item_id:
        raise ValueError("field 'item_id' must not be empty")
    return CatalogRecord(
        item_id=item_id,
        title=text("title"),
        category=text("category"),
        brand=text("brand"),
        merchant_id=text("merchant_id"),
        price=None if price is None else float(price),
        tags=tuple(str(t) for t in tags),
    )


def _unit(weights: Mapping[str, float], share: float) -> dict[str, float]:
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {} if norm == 0.0 else {k: share * w / norm for k, w in weights.items()}


def item_features(
    record: CatalogRecord,
    field_weights: Mapping[str, float] = DEFAULT_FIELD_WEIGHTS,
    price_base: float = 2.0,
) -> dict[str, float]:
    """Named features (``field`` + U+001F + token) and their weights, before hashing.

    Each non-empty field's weights have L2 norm equal to its field weight.

    >>> rec = CatalogRecord("i1", category="sports/yoga-mats", price=48.0)
    >>> feats = {k.replace("\\x1f", ":"): round(v, 3) for k, v in item_features(rec).items()}
    >>> list(feats)
    ['category:sports', 'category:sports/yoga-mats', 'price:5', 'price:6']
    >>> list(feats.values())  # category weighs 1.0 in total, price 0.5 (L2)
    [0.447, 0.894, 0.289, 0.408]
    """
    fields: dict[str, dict[str, float]] = {}
    levels = [_label(p) for p in record.category.translate(_CATEGORY_SEPARATORS).split("/")]
    levels = [p for p in levels if p]
    fields["category"] = {"/".join(levels[: d + 1]): float(d + 1) for d in range(len(levels))}
    fields["brand"] = {_label(record.brand): 1.0} if _label(record.brand) else {}
    fields["merchant"] = {record.merchant_id: 1.0} if record.merchant_id else {}
    price: dict[str, float] = {}
    if record.price is not None and record.price > 0:
        position = math.log(record.price) / math.log(price_base)
        low = math.floor(position)
        frac = position - low
        price = {str(low): 1.0 - frac, str(low + 1): frac}
    fields["price"] = {k: v for k, v in price.items() if v > 0}
    tags = list(dict.fromkeys(t for t in (_label(t) for t in record.tags) if t))
    fields["tags"] = dict.fromkeys(tags[:MAX_TAGS], 1.0)
    fields["title"] = dict.fromkeys(tokenize(record.title)[:MAX_TITLE_TOKENS], 1.0)

    features: dict[str, float] = {}
    for name, weights in fields.items():
        for token, w in _unit(weights, field_weights.get(name, 0.0)).items():
            if w != 0.0:
                features[f"{name}\x1f{token}"] = w
    return features
