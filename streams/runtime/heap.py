"""The cyclic garbage collector set for a long-running stream process (worker, learner).

Such a process holds a large heap for its whole life: the framework, the models, the caches.
With CPython's default thresholds (700, 10, 10) the collector runs a young pass every 700 net
allocations and, every so often, a full pass that walks the whole heap: 85-100 ms each in the
learner's loop and in the publish path replayed in process (docs/live-path.md), with the
event loop stopped while a batch waits. :func:`settle_heap`, called once the process is
built, freezes what exists then (``gc.freeze``: the collector never walks it again).

A pass walks every object still alive in the generations it collects. Left to the allocation
count, young passes came in the middle of batches and walked the lists being ranked (3-6 ms
each at 10,000 allocations, a tenth of the worker's CPU at 1,000 events/s); made rarer, they
walked everything the caches had replaced since (a 1.3 s pause). So the worker's consumer
calls :meth:`Collector.between_batches` once a batch's lists are handed over, where little
but the caches is alive, and its automatic threshold (:data:`BATCHED_YOUNG_THRESHOLD`) is only
the net for batches that allocate a lot. The learner and ``socialrec api`` keep theirs at
:data:`YOUNG_THRESHOLD`.

>>> import gc
>>> previous = gc.get_threshold()
>>> settle_heap()
>>> gc.get_threshold()[0] == YOUNG_THRESHOLD, gc.get_freeze_count() > 0
(True, True)
>>> gc.unfreeze(); gc.set_threshold(*previous)

:class:`Pauses` records how long each collection stopped the process, for a metric.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: Net allocations that start a young pass wherever they happen (CPython's default is 700).
YOUNG_THRESHOLD = 10_000
#: The same in the worker, whose young passes run between batches: only a net for batches
#: that allocate a lot.
BATCHED_YOUNG_THRESHOLD = 100_000
#: Between batches, a young pass once this many objects were allocated (net) since the last.
BETWEEN_BATCHES = 2_000
#: As CPython does: a middle pass after this many young ones, a full one after this many
#: middle ones, but a full pass (which walks the whole heap) at most every FULL_EVERY_S.
PASSES_PER_OLDER = 10
FULL_EVERY_S = 60.0


def settle_heap(young: int = YOUNG_THRESHOLD) -> None:
    """Collect once, freeze the survivors, and start young passes every ``young`` net
    allocations."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


class Collector:
    """Collections paced by batches rather than by allocations (see the module's text;
    tests/unit/test_heap.py)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_full = clock()

    def between_batches(self) -> None:
        young, middle, old = gc.get_count()
        if young < BETWEEN_BATCHES:
            return
        now = self._clock()
        if old >= PASSES_PER_OLDER and now - self._last_full >= FULL_EVERY_S:
            gc.collect(2)
            self._last_full = now
        else:
            gc.collect(1 if middle >= PASSES_PER_OLDER else 0)


class Pauses:
    """Each collection's pause (generation, seconds) as the collector reports it, kept until
    :meth:`drain`: the callback runs inside whatever allocation set the collection off, where
    taking a metric's lock could wait on the very thread that holds it.

    >>> with watched_pauses() as pauses:
    ...     _ = gc.collect()
    >>> [generation for generation, _ in pauses.drain()], pauses.drain()
    ([2], [])
    """

    def __init__(self, keep: int = 10_000) -> None:
        self._started = 0.0
        self._done: deque[tuple[int, float]] = deque(maxlen=keep)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._done.append((info["generation"], time.perf_counter() - self._started))

    def drain(self) -> list[tuple[int, float]]:
        """The pauses since the last drain, oldest first."""
        done = self._done
        return [done.popleft() for _ in range(len(done))]


@contextmanager
def watched_pauses() -> Iterator[Pauses]:
    """Record every collection's pause while the block runs."""
    pauses = Pauses()
    gc.callbacks.append(pauses)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(pauses)
