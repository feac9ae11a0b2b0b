"""Similarity shrinkage scaled to the counts the stream has actually produced.

Item-CF's cosine is shrunk as ``dot / (‖i‖·‖j‖ + λ)`` (:func:`models.similarity.cosine`) so a
pair seen together by one user does not look as similar as a pair seen by hundreds. What
"little evidence" means depends on the stream: ``‖i‖²`` is the sum of an item's squared
affinities, so it grows with the event weights, with how many people touch an item and with
how long the history window is. A fixed λ sized for one stream's counts is far too strong or
far too weak on another. Here λ is ``scale`` times the mean ``‖i‖²`` over the items with any
weight, kept exactly as the norms change: a pair whose items carry a typical item's evidence
keeps ``1 / (1 + scale)`` of its cosine, a pair of rarely-touched items keeps far less, a
pair of heavily-touched items nearly all of it, whatever the units of the stream.

>>> est = ShrinkageEstimator(scale=4.0)
>>> est.update(0.0, 9.0); est.update(0.0, 1.0)   # two items: norms 9 and 1, mean 5
>>> est.value
20.0
>>> est.update(9.0, 0.0)                          # the first item's evidence withdrawn
>>> est.value
4.0
"""

from __future__ import annotations

#: λ as a multiple of the mean squared item norm: a pair of typical items keeps 1/(1 + 8) of
#: its cosine, one of items with 10× the typical evidence about half.
DEFAULT_SCALE = 8.0

#: Norms at or below this are zero (the state's own threshold: every contribution withdrawn).
ZERO = 1e-9


class ShrinkageEstimator:
    """λ = ``scale`` × mean of ``‖i‖²`` over items whose norm is above zero.

    ``update(old, new)`` whenever an item's squared norm changes from ``old`` to ``new``;
    ``value`` is λ (``floor`` until any item has weight). Two numbers of state: the sum of
    the norms and how many items have one; a store keeps them beside the norms and changes
    them in the same step.
    """

    __slots__ = ("count", "floor", "scale", "total")

    def __init__(self, scale: float = DEFAULT_SCALE, *, floor: float = 1.0) -> None:
        if scale < 0.0:
            raise ValueError("scale must be >= 0")
        self.scale = scale
        self.floor = floor
        self.total = 0.0
        self.count = 0

    def update(self, old: float, new: float) -> None:
        was, now = old > ZERO, new > ZERO
        self.total += (new if now else 0.0) - (old if was else 0.0)
        self.count += int(now) - int(was)
        if self.count == 0:
            self.total = 0.0  # no drift survives an empty state

    @property
    def value(self) -> float:
        if self.count <= 0:
            return self.floor
        return max(self.floor, self.scale * self.total / self.count)

    def state(self) -> dict[str, float]:
        return {"shrinkage": self.value, "mean_norm2": self.total / max(self.count, 1)}
