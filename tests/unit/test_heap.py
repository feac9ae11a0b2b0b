"""The worker's collections between batches (streams/runtime/heap.py): which pass runs when."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.runtime.heap import (
    BETWEEN_BATCHES,
    FULL_EVERY_S,
    PASSES_PER_OLDER,
    Collector,
    watched_pauses,
)


@pytest.fixture(autouse=True)
def manual_only() -> Iterator[None]:
    """No automatic pass in between: each one seen is the collector's."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _passes(collector: Collector, batches: int) -> list[int]:
    """The generations collected over ``batches`` batches that each leave objects alive."""
    kept: list[list[int]] = []
    with watched_pauses() as pauses:
        for _ in range(batches):
            kept.extend([n] for n in range(2 * BETWEEN_BATCHES))
            collector.between_batches()
        return [generation for generation, _ in pauses.drain()]


def test_no_pass_until_enough_was_allocated() -> None:
    kept = [[n] for n in range(BETWEEN_BATCHES // 2)]
    with watched_pauses() as pauses:
        Collector().between_batches()
        assert pauses.drain() == []
    assert kept


def test_young_passes_then_a_middle_one_then_a_full_one_at_most_every_interval() -> None:
    clock = Clock()
    collector = Collector(clock)
    passes = _passes(collector, PASSES_PER_OLDER + 1)
    assert passes == [0] * PASSES_PER_OLDER + [1]
    more = _passes(collector, (PASSES_PER_OLDER + 1) * PASSES_PER_OLDER)
    assert 2 not in more  # the full pass waits for its interval
    clock.now += FULL_EVERY_S
    assert _passes(collector, 1) == [2]
    assert _passes(collector, 1) == [0]
