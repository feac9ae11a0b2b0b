"""Content-based recommendations from the catalogue: similar items and time-decayed user tastes.

An item becomes a sparse unit vector built from its catalogue record. Each field contributes a
fixed share however many tokens it has (a 30-word title does not drown the category):

- ``category``: every level of the path (``electronics``, ``electronics/phones``), deeper
  levels weighing more, so siblings share their parent;
- ``brand``, ``merchant``: one token each;
- ``price``: soft log-scale bins: ``log(price) / log(price_base)`` split between its two nearest
  bin edges, so 59 and 61 are alike even across a bin edge;
- ``tags``: one token per tag;
- ``title``: lower-cased words (letters, digits and combining marks, any script); runs of CJK
  characters, which carry no spaces, become single characters plus adjacent pairs.

Features are hashed into ``dim`` slots with a signed, stable hash (BLAKE2b, never Python's
per-process ``hash()``), so vectors are identical in every worker and across restarts and
need no vocabulary. A user's profile is the weight-summed, time-decayed mix of the vectors of
the items they acted on (a hide's negative weight pushes away); scores are cosines between the
profile and items, computed for any number of candidates in one vectorised pass.

>>> model = ContentModel()
>>> phones = {"category": "electronics/phones", "brand": "Huawei", "tags": ["5g"]}
>>> model.add_item({"item_id": "p1", "title": "华为 智能手机 256GB", "price": 499.0, **phones})
>>> model.add_item({"item_id": "p2", "title": "华为 智能手机 128GB", "price": 399.0, **phones})
>>> model.add_item({"item_id": "mat", "title": "Cork Yoga Mat", "category": "sports/yoga-mats",
...                 "brand": "Manduka", "merchant_id": "m3", "price": 56.99, "tags": ["eco"]})
>>> [item for item, _ in model.similar_items("p1", 5)]  # the mat shares nothing with p1
['p2']
>>> model.update_profile("ann", "mat", 8.0, ts=1_700_000_000.0)
True
>>> [item for item, _ in model.top_k("ann", 3, exclude={"mat"}, now=1_700_000_000.0)]
[]
>>> model.update_profile("ann", "p1", 3.0, ts=1_700_000_100.0)
True
>>> model.top_k("ann", 3, exclude={"mat", "p1"}, now=1_700_000_100.0)[0][0]
'p2'
>>> tokenize("华为 智能手机")
['华', '为', '华为', '智', '能', '手', '机', '智能', '能手', '手机']
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix

Indices = npt.NDArray[np.int32]
Values = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float64]

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

#: Profile wire format: magic, hashing dim, reference time, mass, entry count, then the entries.
_PROFILE_MAGIC: Final = b"SRP1"
_PROFILE_HEADER: Final = struct.Struct("<4sIddI")


# ---- features --------------------------------------------------------------------------------
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


@functools.lru_cache(maxsize=1 << 16)  # brands, categories and tags repeat across the catalogue
def hash_feature(name: str, dim: int) -> tuple[int, float]:
    """A feature's slot and sign: BLAKE2b, stable across processes and Python versions.

    The sign makes collisions cancel out on average instead of inflating similarity.

    >>> hash_feature("brand\\x1fhuawei", 2**18) == hash_feature("brand\\x1fhuawei", 2**18)
    True
    """
    h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return h % dim, (-1.0 if h >> 63 else 1.0)


@dataclass(frozen=True, slots=True)
class SparseVector:
    """Non-zero entries, indices ascending."""

    indices: Indices
    values: Values

    def dot(self, other: SparseVector) -> float:
        common, a, b = np.intersect1d(
            self.indices, other.indices, assume_unique=True, return_indices=True
        )
        if not len(common):
            return 0.0
        return float(self.values[a].astype(np.float64) @ other.values[b].astype(np.float64))

    def norm(self) -> float:
        return float(np.linalg.norm(self.values.astype(np.float64)))


def hash_features(features: Mapping[str, float], dim: int, max_features: int) -> SparseVector:
    """Hash named features into a unit-length sparse vector of at most ``max_features`` slots.

    Colliding features add up; if more than ``max_features`` slots remain, the smallest go
    (title words first, as they carry the least weight each).
    """
    slots: dict[int, float] = {}
    for name, weight in features.items():
        index, sign = hash_feature(name, dim)
        slots[index] = slots.get(index, 0.0) + sign * weight
    kept = sorted(slots.items(), key=lambda iv: (-abs(iv[1]), iv[0]))[:max_features]
    kept = sorted(iv for iv in kept if iv[1] != 0.0)
    indices = np.array([i for i, _ in kept], dtype=np.int32)
    values = np.array([v for _, v in kept], dtype=np.float64)
    norm = float(np.linalg.norm(values))
    if norm > 0.0:
        values /= norm
    return SparseVector(indices, values.astype(np.float32))


# ---- profiles --------------------------------------------------------------------------------
@dataclass(slots=True)
class _Profile:
    ts: float  # the time the stored values refer to (latest event seen)
    mass: float  # Σ |weight| decayed to ts: how much evidence is left
    indices: Indices = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    values: Values = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


class ContentModel:
    """Item vectors from the catalogue, per-user taste profiles, cosine scoring.

    ``half_life_s``: an action's weight in the profile halves every half-life.
    ``min_strength``: below this decayed weight a profile is stale and the user treated as cold
    (a single view, weight 1, falls below 0.01 after about 6.6 half-lives).
    ``profile_size``: entries kept per profile (the largest by magnitude).
    """

    def __init__(
        self,
        *,
        dim: int = 2**18,
        field_weights: Mapping[str, float] | None = None,
        price_base: float = 2.0,
        max_features: int = 64,
        half_life_s: float = 7 * 86_400.0,
        profile_size: int = 256,
        min_strength: float = 0.01,
    ) -> None:
        if not 2 <= dim <= 2**30 or max_features < 1 or profile_size < 1:
            raise ValueError("dim must be in [2, 2**30], max_features and profile_size >= 1")
        if not (half_life_s > 0 and price_base > 1 and min_strength >= 0):
            raise ValueError("half_life_s must be > 0, price_base > 1, min_strength >= 0")
        weights = dict(DEFAULT_FIELD_WEIGHTS if field_weights is None else field_weights)
        unknown = set(weights) - set(FIELDS)
        if unknown or any(not (math.isfinite(w) and w >= 0) for w in weights.values()):
            raise ValueError(f"field weights must be finite, >= 0 and among {FIELDS}")
        self.dim = dim
        self.field_weights: Mapping[str, float] = weights
        self.price_base = price_base
        self.max_features = max_features
        self.half_life_s = half_life_s
        self.profile_size = profile_size
        self.min_strength = min_strength

        # Every item is one row of two padded matrices (slot, value); padding has value 0, so
        # scoring any set of rows is a gather and a row sum, with no Python loop over items.
        self._idx = np.zeros((64, max_features), dtype=np.int32)
        self._val = np.zeros((64, max_features), dtype=np.float32)
        self._width = 0  # most slots any item has used: columns beyond are all padding
        # The catalogue as a sparse items × dim matrix (CSR): scoring every item is one C loop
        # over the non-zero entries, 2.3× faster than gathering the padded block and summing
        # its rows. Rebuilt on the first query after the catalogue changes (rare next to
        # queries).
        self._matrix: csr_matrix | None = None
        # Each row's position in id order, built with the matrix: the id tie-break of _best
        # among thousands of tied items (a catalogue whose only feature is a category) is then
        # a partition of integers instead of a sort of strings.
        self._id_rank: npt.NDArray[np.intp] | None = None
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._profiles: dict[str, _Profile] = {}

    # ---- catalogue -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def add_item(self, record: Mapping[str, object]) -> None:
        """Add or replace an item from its catalogue record (``ValueError`` if malformed).

        Replacing changes the item's vector; profiles keep the mix they were built from.
        """
        parsed = parse_record(record)
        features = item_features(parsed, self.field_weights, self.price_base)
        vector = hash_features(features, self.dim, self.max_features)
        row = self._rows.get(parsed.item_id)
        if row is None:
            row = len(self._ids)
            if row == len(self._idx):
                self._idx = np.concatenate([self._idx, np.zeros_like(self._idx)])
                self._val = np.concatenate([self._val, np.zeros_like(self._val)])
            self._ids.append(parsed.item_id)
            self._rows[parsed.item_id] = row
        n = len(vector.indices)
        self._width = max(self._width, n)
        self._matrix = None
        self._id_rank = None
        self._idx[row] = 0
        self._val[row] = 0.0
        self._idx[row, :n] = vector.indices
        self._val[row, :n] = vector.values

    def remove_item(self, item_id: str) -> bool:
        """Forget an item (delisted); True if it was known. Profiles are left as they are."""
        row = self._rows.pop(item_id, None)
        if row is None:
            return False
        self._matrix = None
        self._id_rank = None
        last = len(self._ids) - 1
        if row != last:  # keep rows contiguous: move the last item into the hole
            moved = self._ids[last]
            self._idx[row] = self._idx[last]
            self._val[row] = self._val[last]
            self._ids[row] = moved
            self._rows[moved] = row
        self._ids.pop()
        self._idx[last] = 0
        self._val[last] = 0.0
        return True

    def item_ids(self) -> tuple[str, ...]:
        return tuple(self._ids)

    def item_vector(self, item_id: str) -> SparseVector | None:
        """The item's unit vector (non-zero slots, ascending), or None if unknown."""
        row = self._rows.get(item_id)
        if row is None:
            return None
        nonzero = self._val[row] != 0.0
        return SparseVector(self._idx[row][nonzero].copy(), self._val[row][nonzero].copy())

    def similar_items(self, item_id: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` items most similar to ``item_id`` by cosine, best first, only > 0.

        Works the moment the item's record has arrived: no user has to touch it first.
        """
        vector = self.item_vector(item_id)
        if vector is None:
            return []
        scores = self._cosines(vector.indices, vector.values, 1.0)
        return self._best(scores, k, exclude=(item_id,))

    def similarities(self, item_id: str, item_ids: Sequence[str]) -> Scores:
        """Cosines between ``item_id`` and each of ``item_ids``, in order, in one pass.

        0 where either item is unknown. Item vectors are unit length, so a dot is a cosine;
        used to say which of a user's items a candidate resembles most.

        >>> model = ContentModel()
        >>> model.add_item({"item_id": "a", "category": "home/lamps", "brand": "Ikea"})
        >>> model.add_item({"item_id": "b", "category": "home/lamps", "brand": "Muji"})
        >>> [round(float(s), 2) for s in model.similarities("a", ["a", "b", "gone"])]
        [1.0, 0.61, 0.0]
        """
        scores = np.zeros(len(item_ids), dtype=np.float64)
        vector = self.item_vector(item_id)
        if vector is None or not item_ids:
            return scores
        rows = np.array([self._rows.get(i, -1) for i in item_ids], dtype=np.intp)
        known = rows >= 0
        dense = self._dense(vector.indices, vector.values)
        scores[known] = np.clip(self._dots(dense, rows[known]), -1.0, 1.0)
        return scores

    # ---- profiles --------------------------------------------------------------------------
    def update_profile(self, user_id: str, item_id: str, weight: float, ts: float) -> bool:
        """Mix the item's vector into the user's profile with ``weight`` at time ``ts``.

        False (and nothing changes) when the item has no catalogue record yet or the weight is
        0: content has nothing to learn from it. Events may arrive out of order: a late one is
        decayed to the profile's time instead of moving the profile back.
        """
        if not (math.isfinite(weight) and math.isfinite(ts)):
            raise ValueError("weight and ts must be finite")
        vector = self.item_vector(item_id)
        if vector is None or weight == 0.0:
            return False
        profile = self._profiles.get(user_id)
        if profile is None:
            profile = self._profiles[user_id] = _Profile(ts=ts, mass=0.0)
        if ts >= profile.ts:
            keep = self._decay(ts - profile.ts)
            scale = weight
            profile.ts = ts
        else:
            keep = 1.0
            scale = weight * self._decay(profile.ts - ts)
        profile.mass = profile.mass * keep + abs(scale)

        # Both slot lists are ascending and unique: the item's slots already in the profile
        # add to their entry, the others are merged in, and the result is sorted again.
        slots, summed = profile.indices, profile.values.astype(np.float64) * keep
        added, amounts = vector.indices, vector.values.astype(np.float64) * scale
        at = np.searchsorted(slots, added)
        shared = at < len(slots)
        shared[shared] = slots[at[shared]] == added[shared]
        summed[at[shared]] += amounts[shared]
        if not shared.all():
            slots = np.concatenate([slots, added[~shared]])
            summed = np.concatenate([summed, amounts[~shared]])
            order = np.argsort(slots, kind="stable")
            slots, summed = slots[order], summed[order]
        nonzero = summed != 0.0  # exact cancellations and values decayed to nothing
        slots, summed = slots[nonzero], summed[nonzero]
        if len(slots) > self.profile_size:
            keep_at = np.sort(np.argpartition(-np.abs(summed), self.profile_size - 1))
            slots, summed = (
                slots[keep_at[: self.profile_size]],
                summed[keep_at[: self.profile_size]],
            )
        profile.indices = slots.astype(np.int32)
        profile.values = summed.astype(np.float32)
        return True

    def profile_strength(self, user_id: str, now: float) -> float:
        """How much decayed evidence the profile holds at ``now`` (0 for an unknown user)."""
        profile = self._profiles.get(user_id)
        if profile is None:
            return 0.0
        return profile.mass * self._decay(max(0.0, now - profile.ts))

    def profile_vector(self, user_id: str, now: float) -> SparseVector | None:
        """The profile decayed to ``now`` (not normalised), or None for an unknown user."""
        profile = self._profiles.get(user_id)
        if profile is None:
            return None
        keep = self._decay(max(0.0, now - profile.ts))
        return SparseVector(profile.indices.copy(), (profile.values * keep).astype(np.float32))

    def score(self, user_id: str, item_ids: Sequence[str], now: float) -> Scores:
        """Cosines between the user's profile and ``item_ids``, in order, in [-1, 1].

        0 for unknown items, and for everything when the user is cold (no profile, or one whose
        strength at ``now`` fell below ``min_strength``). Decay itself does not change a cosine:
        it changes how much each past action counts relative to the others.
        """
        scores = np.zeros(len(item_ids), dtype=np.float64)
        profile = self._live_profile(user_id, now)
        if profile is None or not item_ids:
            return scores
        rows = np.array([self._rows.get(i, -1) for i in item_ids], dtype=np.intp)
        known = rows >= 0
        dense = self._dense(profile.indices, profile.values)
        norm = float(np.linalg.norm(profile.values.astype(np.float64)))
        scores[known] = np.clip(self._dots(dense, rows[known]) / norm, -1.0, 1.0)
        return scores

    def top_k(
        self, user_id: str, k: int, exclude: Collection[str] = (), *, now: float
    ) -> list[tuple[str, float]]:
        """The ``k`` catalogue items closest to the user's taste, best first, only cosine > 0."""
        profile = self._live_profile(user_id, now)
        if profile is None:
            return []
        norm = float(np.linalg.norm(profile.values.astype(np.float64)))
        scores = self._cosines(profile.indices, profile.values, norm)
        return self._best(scores, k, exclude=exclude)

    def forget_user(self, user_id: str) -> bool:
        """Delete the user's profile: the only user state this model has. True if it existed."""
        return self._profiles.pop(user_id, None) is not None

    def user_ids(self) -> tuple[str, ...]:
        return tuple(self._profiles)

    def export_profile(self, user_id: str) -> bytes | None:
        """The profile as bytes for Redis (None for an unknown user); exact round trip."""
        profile = self._profiles.get(user_id)
        if profile is None:
            return None
        header = _PROFILE_HEADER.pack(
            _PROFILE_MAGIC, self.dim, profile.ts, profile.mass, len(profile.indices)
        )
        return (
            header
            + profile.indices.astype("<i4").tobytes()
            + profile.values.astype("<f4").tobytes()
        )

    def import_profile(self, user_id: str, raw: bytes) -> None:
        """Load a profile from :meth:`export_profile`; rejects another ``dim`` or a bad blob."""
        if len(raw) < _PROFILE_HEADER.size:
            raise ValueError("profile blob is truncated")
        magic, dim, ts, mass, n = _PROFILE_HEADER.unpack_from(raw)
        if magic != _PROFILE_MAGIC:
            raise ValueError("not a content profile blob")
        if dim != self.dim:
            raise ValueError(f"profile was hashed into {dim} slots, this model uses {self.dim}")
        if len(raw) != _PROFILE_HEADER.size + 8 * n:
            raise ValueError("profile blob has the wrong length")
        start = _PROFILE_HEADER.size
        indices = np.frombuffer(raw, dtype="<i4", count=n, offset=start).astype(np.int32)
        values = np.frombuffer(raw, dtype="<f4", count=n, offset=start + 4 * n).astype(np.float32)
        if not (math.isfinite(ts) and math.isfinite(mass) and np.all(np.isfinite(values))):
            raise ValueError("profile blob contains NaN or infinity")
        if n and (indices.min() < 0 or indices.max() >= dim or np.any(np.diff(indices) <= 0)):
            raise ValueError("profile slots must be ascending and within dim")
        self._profiles[user_id] = _Profile(ts, mass, indices, values)

    # ---- internals -------------------------------------------------------------------------
    def _decay(self, elapsed_s: float) -> float:
        return math.pow(2.0, -elapsed_s / self.half_life_s)

    def _live_profile(self, user_id: str, now: float) -> _Profile | None:
        profile = self._profiles.get(user_id)
        if profile is None or not len(profile.values):
            return None
        if self.profile_strength(user_id, now) < self.min_strength:
            return None
        return profile

    def _dense(self, indices: Indices, values: Values) -> Values:
        # np.zeros is calloc: untouched pages of the scratch vector cost nothing, and they all
        # map to the one zero page, so the gather that reads them stays in cache (a scratch
        # vector kept between calls measured twice as slow).
        dense = np.zeros(self.dim, dtype=np.float32)
        dense[indices] = values
        return dense

    def _cosines(self, indices: Indices, values: Values, norm: float) -> Scores:
        """Cosine of a sparse vector of L2 norm ``norm`` with every item, in row order."""
        count = len(self._ids)
        if norm == 0.0:
            return np.zeros(count, dtype=np.float64)
        cosines: Scores = self._dots(self._dense(indices, values), None) / norm
        return np.clip(cosines, -1.0, 1.0, out=cosines)

    def _dots(self, dense: Values, rows: npt.NDArray[np.intp] | None) -> Scores:
        """Dot products of a dense vector with the items in ``rows`` (None: every item).

        Each row is summed in float32 in slot order, whether all rows or some are asked for,
        so an item's score is the same bits either way; widened to float64 at the end.
        """
        width = self._width
        if rows is not None:
            # A few rows (explanations, candidate scores): from the padded block, a running
            # float32 sum along each row, which is the sparse product's order (padding adds
            # zeros at the end), at a third of the cost of slicing the sparse matrix.
            if width == 0:
                return np.zeros(len(rows), dtype=np.float64)
            products = self._val[rows, :width] * dense[self._idx[rows, :width]]
            running = np.cumsum(products, axis=1, dtype=np.float32)
            return np.asarray(running[:, -1], dtype=np.float64)
        if self._matrix is None:
            count = len(self._ids)
            values = self._val[:count, :width]
            rows_of, columns = np.nonzero(values)  # row-major: each row's slots in order
            self._matrix = csr_matrix(
                (values[rows_of, columns], (rows_of, self._idx[:count, :width][rows_of, columns])),
                shape=(count, self.dim),
                dtype=np.float32,
            )
        dots: Scores = np.asarray(self._matrix @ dense, dtype=np.float64)
        return dots

    def _ranks(self) -> npt.NDArray[np.intp]:
        if self._id_rank is None or len(self._id_rank) != len(self._ids):
            ids = self._ids
            rank = np.empty(len(ids), dtype=np.intp)
            rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
            self._id_rank = rank
        return self._id_rank

    def _best(self, scores: Scores, k: int, exclude: Iterable[str]) -> list[tuple[str, float]]:
        """Top ``k`` positive scores, ties by item id, never an excluded item. ``scores`` is
        the caller's scratch: excluded rows are zeroed in place."""
        if k <= 0 or not len(scores):
            return []
        banned = [r for r in (self._rows.get(i) for i in exclude) if r is not None]
        scores[banned] = 0.0
        positive = np.flatnonzero(scores > 0.0)
        if len(positive) > k:
            # Keep everything tied with the k-th best so the id tie-break below is honest.
            threshold = np.partition(scores[positive], len(positive) - k)[len(positive) - k]
            above = positive[scores[positive] > threshold]
            tied = positive[scores[positive] == threshold]
            need = k - len(above)
            if len(tied) > need:
                # Only the `need` smallest ids of the tied can be kept: pick them by id rank.
                ranks = self._ranks()[tied]
                tied = tied[np.argpartition(ranks, need - 1)[:need]]
            positive = np.concatenate([above, tied])
        # (−score, id) pairs sort in C: best first, ties by id.
        ids = self._ids
        ranked = sorted(
            zip((-scores[positive]).tolist(), [ids[r] for r in positive.tolist()], strict=True)
        )
        return [(item, -negative) for negative, item in ranked[:k]]
