"""Trending items per scope: weighted counts and velocity over short sliding windows.

* :mod:`.scopes`: the scope names (``global``, ``category:X``, ``merchant:Z``, ``stream:Y``) and
  which of them an event counts in;
* :mod:`.results`: tallies, a scope's ranked :class:`TrendingList`, and the ranking shared by
  the in-memory windows and buckets kept elsewhere (:func:`summarise_buckets`);
* :mod:`.buckets`: one scope's time buckets and the running window totals sliding over them;
* :mod:`.windows`: :class:`TrendingWindows`, every scope's buckets, updates, erasure and reads.

>>> from models.events import Event, EventType
>>> tw = TrendingWindows(windows_s=(60.0,), bucket_s=1.0)
>>> tw.add_event(Event("e1", EventType.CART, "u1", 10.0, item_id="sku-9"), category="beauty")
('global', 'category:beauty')
>>> [i.item_id for i in tw.top(GLOBAL_SCOPE, k=3, now=11.0).items]
['sku-9']
"""

from __future__ import annotations

from models.trending.buckets import ScopeState
from models.trending.results import (
    SettledSums,
    Tally,
    TrendingItem,
    TrendingList,
    rank_items,
    settled_sums,
    summarise_buckets,
)
from models.trending.scopes import (
    GLOBAL_SCOPE,
    category_scope,
    merchant_scope,
    scopes_for,
    stream_scope,
)
from models.trending.windows import TrendingWindows

__all__ = [
    "GLOBAL_SCOPE",
    "ScopeState",
    "SettledSums",
    "Tally",
    "TrendingItem",
    "TrendingList",
    "TrendingWindows",
    "category_scope",
    "merchant_scope",
    "rank_items",
    "scopes_for",
    "settled_sums",
    "stream_scope",
    "summarise_buckets",
]
