"""The content model: catalogue items as vectors, users as time-decayed profiles, cosine scores.

Features come from :mod:`.features`, are hashed by :mod:`.vectors`, kept in an
:class:`~models.content.index.ItemIndex`, and mixed into the :mod:`.profiles` of the users who
act on them; scores are cosines between a profile and items, computed for any number of
candidates in one vectorised pass.

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
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from models.content.features import DEFAULT_FIELD_WEIGHTS, FIELDS, item_features, parse_record
from models.content.index import ItemIndex
from models.content.profiles import Profile, decay, mix, pack, unpack
from models.content.vectors import Scores, SparseVector, hash_features


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
        self._items = ItemIndex(dim, max_features)
        self._profiles: dict[str, Profile] = {}

    # ---- catalogue -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def add_item(self, record: Mapping[str, object]) -> None:
        """Add or replace an item from its catalogue record (``ValueError`` if malformed).

        Replacing changes the item's vector; profiles keep the mix they were built from.
        """
        parsed = parse_record(record)
        features = item_features(parsed, self.field_weights, self.price_base)
        self._items.put(parsed.item_id, hash_features(features, self.dim, self.max_features))

    def remove_item(self, item_id: str) -> bool:
        """Forget an item (delisted); True if it was known. Profiles are left as they are."""
        return self._items.remove(item_id)

    def item_ids(self) -> tuple[str, ...]:
        return self._items.item_ids()

    def item_vector(self, item_id: str) -> SparseVector | None:
        """The item's unit vector (non-zero slots, ascending), or None if unknown."""
        return self._items.vector(item_id)

    def similar_items(self, item_id: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` items most similar to ``item_id`` by cosine, best first, only > 0.

        Works the moment the item's record has arrived: no user has to touch it first.
        """
        vector = self.item_vector(item_id)
        if vector is None:
            return []
        scores = self._items.cosines(vector.indices, vector.values, 1.0)
        return self._items.best(scores, k, exclude=(item_id,))

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
        rows = self._items.rows(item_ids)
        known = rows >= 0
        dense = self._items.dense(vector.indices, vector.values)
        scores[known] = np.clip(self._items.dots(dense, rows[known]), -1.0, 1.0)
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
            profile = self._profiles[user_id] = Profile(ts=ts, mass=0.0)
        mix(profile, vector, weight, ts, self.half_life_s, self.profile_size)
        return True

    def profile_strength(self, user_id: str, now: float) -> float:
        """How much decayed evidence the profile holds at ``now`` (0 for an unknown user)."""
        profile = self._profiles.get(user_id)
        if profile is None:
            return 0.0
        return profile.mass * decay(max(0.0, now - profile.ts), self.half_life_s)

    def profile_vector(self, user_id: str, now: float) -> SparseVector | None:
        """The profile decayed to ``now`` (not normalised), or None for an unknown user."""
        profile = self._profiles.get(user_id)
        if profile is None:
            return None
        keep = decay(max(0.0, now - profile.ts), self.half_life_s)
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
        rows = self._items.rows(item_ids)
        known = rows >= 0
        dense = self._items.dense(profile.indices, profile.values)
        norm = float(np.linalg.norm(profile.values.astype(np.float64)))
        scores[known] = np.clip(self._items.dots(dense, rows[known]) / norm, -1.0, 1.0)
        return scores

    def top_k(
        self, user_id: str, k: int, exclude: Collection[str] = (), *, now: float
    ) -> list[tuple[str, float]]:
        """The ``k`` catalogue items closest to the user's taste, best first, only cosine > 0."""
        profile = self._live_profile(user_id, now)
        if profile is None:
            return []
        norm = float(np.linalg.norm(profile.values.astype(np.float64)))
        scores = self._items.cosines(profile.indices, profile.values, norm)
        return self._items.best(scores, k, exclude=exclude)

    def forget_user(self, user_id: str) -> bool:
        """Delete the user's profile: the only user state this model has. True if it existed."""
        return self._profiles.pop(user_id, None) is not None

    def user_ids(self) -> tuple[str, ...]:
        return tuple(self._profiles)

    def export_profile(self, user_id: str) -> bytes | None:
        """The profile as bytes for Redis (None for an unknown user); exact round trip."""
        profile = self._profiles.get(user_id)
        return None if profile is None else pack(profile, self.dim)

    def import_profile(self, user_id: str, raw: bytes) -> None:
        """Load a profile from :meth:`export_profile`; rejects another ``dim`` or a bad blob."""
        self._profiles[user_id] = unpack(raw, self.dim)

    def _live_profile(self, user_id: str, now: float) -> Profile | None:
        profile = self._profiles.get(user_id)
        if profile is None or not len(profile.values):
            return None
        if self.profile_strength(user_id, now) < self.min_strength:
            return None
        return profile
