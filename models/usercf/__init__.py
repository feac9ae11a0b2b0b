"""User-user collaborative filtering: people who act like you, and what they liked.

Each user is a vector of affinities ``a_ui`` (the clamped sum of their event weights on item
``i``, as in :mod:`models.similarity`). Two users are similar by the cosine of their vectors:

    sim(u, v) = Σ_i a_ui·a_vi / (‖u‖·‖v‖)

The model holds a set of *entries* (user, item, affinity), each stored twice and always
together: ``items[u][i] = a_ui`` and, in the inverted index, ``index[i][u] = last event time``.
Both sides are bounded: a user keeps their ``items_per_user`` most recent items and an item
indexes its ``users_per_item`` most recent users; an entry evicted from either side is removed
from both, so the model is always exactly "these entries", never half of one.

Dot products are computed when asked, from the index, instead of being maintained per pair:
a query counts, over the user's items, the users indexing them (O(items_per_user ×
users_per_item) bounded work, one numpy bincount), then computes the dot products with the
users it compares. In exchange nothing drifts (each dot product adds the shared items in id
order, so ``sim(u, v) == sim(v, u)`` exactly), an event costs O(items_per_user) (the user's
norm is recomputed from their row) plus one scan of a row when a cap is exceeded, and erasing
a user is removing their entries: no pair table holds them anywhere else.

>>> from models.events import EventType
>>> cf = UserCF()
>>> for user, items in {"ann": ["phone", "case", "tripod"], "bob": ["phone", "case"],
...                     "cy": ["dress"]}.items():
...     for n, item in enumerate(items):
...         _ = cf.add(user, item, EventType.PURCHASE, ts=float(n))
>>> [(n.user_id, round(n.similarity, 3), n.overlap) for n in cf.neighbours("bob", k=5)]
[('ann', 0.816, 2)]
>>> [(c.item_id, round(c.score, 3), c.contributors) for c in cf.candidates("bob", k=5)]
[('tripod', 6.532, ('ann',))]
>>> cf.forget_user("ann"); cf.candidates("bob", k=5)
[]
"""

from __future__ import annotations

from models.usercf.entries import UserEntries
from models.usercf.model import Neighbour, UserCF, UserCFCandidate
from models.usercf.pools import pool_of, pool_order

__all__ = ["Neighbour", "UserCF", "UserCFCandidate", "UserEntries", "pool_of", "pool_order"]
