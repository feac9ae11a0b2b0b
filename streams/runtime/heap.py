"""The cyclic garbage collector set for a long-running stream process (worker, learner).

Such a process holds a large heap for its whole life: the framework, the models, the caches.
With CPython's default thresholds (700, 10, 10) the collector runs a young pass every 700 net
allocations and, every so often, a full pass that walks the whole heap: 85-100 ms each in the
learner's loop and in the publish path replayed in process (docs/live-path.md), with the
event loop stopped while a batch waits. :func:`settle_heap`, called once the process is
built, freezes what exists then (``gc.freeze``: the collector never walks it again) and runs
young passes every :data:`YOUNG_THRESHOLD` allocations: cycles that per-batch work leaves
are still found, in fewer, larger passes.

>>> import gc
>>> previous = gc.get_threshold()
>>> settle_heap()
>>> gc.get_threshold()[0] == YOUNG_THRESHOLD, gc.get_freeze_count() > 0
(True, True)
>>> gc.unfreeze(); gc.set_threshold(*previous)
"""

from __future__ import annotations

import gc

#: Net allocations between young collections (CPython's default is 700).
YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Collect once, freeze the survivors, and make young collections rarer."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
