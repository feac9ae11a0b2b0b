"""Online matrix factorisation for implicit feedback, learnt by River one event at a time.

A user ``u`` and an item ``i`` each have ``factors`` latent numbers; ``p_u · q_i`` is the logit of
"u interacts with i". Every event ``(u, i, w)`` becomes a few weighted logistic examples:

- ``w > 0``: ``i`` is a positive with confidence ``min(w, max_confidence)``, and ``negatives``
  items drawn from the known items (uniformly, or in proportion to recent popularity) are
  negatives with confidence ``negative_weight``. Without them the model only ever sees ones and
  learns to say "yes" to everything;
- ``w < 0`` (a hide): ``i`` is an explicit negative with confidence ``min(-w, max_confidence)``;
- ``w == 0`` (follow, unfollow): nothing to learn.

River does the learning: :class:`river.optim.losses.Log` gives the gradient of the loss with
respect to each logit, and :class:`river.optim.SGD` applies the L2-regularised updates to the
user's and the items' factor rows. This module only keeps the factors in a layout that makes
scoring one matrix-vector product and persistence a row copy.

Determinism: a new id's initial factors are a pure function of ``(seed, id)``, and the negatives
of the n-th learning step a pure function of ``(seed, n)`` and the sampling pool (the known items
in row order, or the recent positives). The same seed and the same events in the same order give
bit-identical factors in any process, and so does a model restored from
:meth:`OnlineMF.export_rows` (float32 in memory and on the wire, so nothing is rounded on the
way) plus :meth:`OnlineMF.sampler_state`, with item rows imported in their exported order.

>>> mf = OnlineMF(factors=8, negatives=2, seed=7)
>>> for _ in range(30):
...     mf.learn("ann", "phone", 8.0)
...     mf.learn("ann", "case", 5.0)
...     mf.learn("bob", "novel", 8.0)
...     mf.learn("bob", "bookmark", 5.0)
>>> [item for item, _ in mf.top_k("ann", 2)]
['phone', 'case']
>>> phone, novel, unknown = mf.score("ann", ["phone", "novel", "never-seen"])
>>> bool(phone > 0 > novel), float(unknown)
(True, 0.0)
>>> mf.top_k("nobody", 3)  # a cold user: MF has nothing to say, the caller falls back
[]
>>> rows = mf.export_rows("user")  # {user_id: float32 bytes}, ready for a Redis hash
>>> restored = OnlineMF(factors=8, negatives=2, seed=7)
>>> restored.import_rows("user", rows)
>>> restored.import_rows("item", mf.export_rows("item"))
>>> bool((restored.score("bob", ["novel"]) == mf.score("bob", ["novel"])).all())
True
"""

from __future__ import annotations

from models.mf.model import OnlineMF
from models.mf.rows import (
    WIRE_DTYPE,
    Changed,
    FactorRows,
    Table,
    Vector,
    decode_ledger_row,
    decode_ledger_rows,
    decode_vector,
    encode_ledger_row,
    encode_ledger_rows,
    encode_vector,
    ledger_width,
)
from models.mf.sampler import NegativeSampler, SamplerState, Sampling

__all__ = [
    "WIRE_DTYPE",
    "Changed",
    "FactorRows",
    "NegativeSampler",
    "OnlineMF",
    "SamplerState",
    "Sampling",
    "Table",
    "Vector",
    "decode_ledger_row",
    "decode_ledger_rows",
    "decode_vector",
    "encode_ledger_row",
    "encode_ledger_rows",
    "encode_vector",
    "ledger_width",
]
