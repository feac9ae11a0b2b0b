"""The synthetic world's shape: categories, catalogue items, merchants, shoppers and the
world that holds them with the integer-indexed lookups the event generator needs, and the two
weighted draws both sides use. :func:`models.simulator.build.generate_world` fills it in.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson


@dataclass(frozen=True, slots=True)
class Category:
    """A leaf of the category tree. ``path`` ("electronics/phones") is what items carry."""

    path: str
    name: str
    department: str
    complements: tuple[str, ...]  # paths of categories often bought together with this one


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """One catalogue entry, in the shape of the ``catalog`` topic.

    >>> item = CatalogItem("i1", "华为 智能手机 256GB", "electronics/phones", "Huawei", "m2",
    ...                    499.0, ("electronics", "phones"))
    >>> body = orjson.loads(item.to_json())
    >>> body["title"], body["price"], body["tags"]
    ('华为 智能手机 256GB', 499.0, ['electronics', 'phones'])
    """

    item_id: str
    title: str
    category: str
    brand: str
    merchant_id: str
    price: float
    tags: tuple[str, ...]

    def to_json(self) -> bytes:
        """The catalog topic's wire form (UTF-8 JSON)."""
        return orjson.dumps(
            {
                "item_id": self.item_id,
                "title": self.title,
                "category": self.category,
                "brand": self.brand,
                "merchant_id": self.merchant_id,
                "price": self.price,
                "tags": list(self.tags),
            }
        )


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    name: str
    categories: tuple[str, ...]  # category paths, 1-3 of them


@dataclass(frozen=True, slots=True)
class SimUser:
    """A shopper. ``favourites`` are category paths, most preferred first."""

    user_id: str
    favourites: tuple[str, ...]
    activity: float  # relative session frequency (heavy-tailed: a few users shop a lot)


@dataclass(frozen=True, slots=True)
class WorldIndex:
    """Integer-indexed lookups the event generator needs; derived from the public fields."""

    cat_items: tuple[tuple[int, ...], ...]  # per category, items in popularity order
    cat_cum: tuple[tuple[float, ...], ...]  # matching cumulative Zipf weights
    browse_cats: tuple[int, ...]  # non-empty categories
    browse_cum: tuple[float, ...]
    complements: tuple[tuple[int, ...], ...]  # per category, non-empty complements
    user_favs: tuple[tuple[int, ...], ...]
    user_fav_cum: tuple[tuple[float, ...], ...]
    activity_cum: tuple[float, ...]
    fans: tuple[tuple[int, ...], ...]  # per category, users who have it as a favourite
    merchant_items: tuple[tuple[int, ...], ...]  # popularity order
    item_category: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class World:
    """The synthetic world: catalogue, merchants, users and the initial follow graph.

    ``following[u]`` lists the indices (into ``users``) of the users that user ``u`` follows.
    ``popularity[i]`` is item ``i``'s relative weight within its category (Zipf).
    """

    seed: int
    categories: tuple[Category, ...]
    items: tuple[CatalogItem, ...]
    merchants: tuple[Merchant, ...]
    users: tuple[SimUser, ...]
    following: tuple[tuple[int, ...], ...]
    influencers: tuple[int, ...]  # user indices with the most followers
    popularity: tuple[float, ...]
    _ix: WorldIndex = field(repr=False, compare=False)

    def followers_of(self, user_id: str) -> tuple[str, ...]:
        """Who follows ``user_id`` in the initial graph (events change it later)."""
        u = int(user_id[1:])
        return tuple(self.users[f].user_id for f, fol in enumerate(self.following) if u in fol)

    def following_of(self, user_id: str) -> tuple[str, ...]:
        return tuple(self.users[v].user_id for v in self.following[int(user_id[1:])])


def cumulative(weights: Sequence[float]) -> tuple[float, ...]:
    """Running sums of ``weights``, for :func:`pick`."""
    return tuple(itertools.accumulate(weights))


def pick(rng: random.Random, cum: Sequence[float]) -> int:
    """Index drawn in proportion to the weights whose running sums are ``cum``."""
    return bisect.bisect_right(cum, rng.random() * cum[-1])
