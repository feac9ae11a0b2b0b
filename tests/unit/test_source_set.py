"""The order in which the sources learn a batch, and what runs beside the last of them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from models.events import Event, EventType
from models.recommend import Candidate, Source
from streams.metrics import WorkerMetrics
from streams.sources import SourceSet
from streams.sources.progress import Marks

EVENTS = [Event("e1", EventType.VIEW, "ann", 1.0, item_id="phone")]


class _Source:
    """Records when it learns; a committing one (item-CF's place) waits for ``gate``."""

    def __init__(self, source: Source, order: list[str], gate: asyncio.Event | None = None):
        self.source, self.order, self.gate = source, order, gate
        self.commits_learnt = gate is not None

    async def learn(self, events: Sequence[Event], learnt: Marks | None = None) -> None:
        self.order.append(f"{self.source.value} starts")
        if self.gate is not None:
            await self.gate.wait()
        self.order.append(f"{self.source.value} ends")

    async def candidates(
        self, user_ids: Sequence[str], exclude: Mapping[str, frozenset[str]], k: int, now: float
    ) -> dict[str, list[Candidate]]:
        return {}

    async def erase(self, user_ids: Sequence[str]) -> dict[str, int]:
        return {}


async def test_the_refresh_runs_after_the_first_wave_and_beside_the_committing_source() -> None:
    order: list[str] = []
    gate = asyncio.Event()

    async def refresh() -> None:
        order.append("refresh")
        gate.set()  # item-CF can only end once the refresh ran: they run side by side

    sources = SourceSet(
        [_Source(Source.ITEM_CF, order, gate), _Source(Source.MF, order)], WorkerMetrics()
    )
    await asyncio.wait_for(sources.learn(EVENTS, None, refresh), timeout=30)
    assert order == ["mf starts", "mf ends", "item_cf starts", "refresh", "item_cf ends"]


async def test_the_refresh_runs_when_the_batch_teaches_nothing() -> None:
    order: list[str] = []

    async def refresh() -> None:
        order.append("refresh")

    await SourceSet([_Source(Source.MF, order)], WorkerMetrics()).learn([], None, refresh)
    assert order == ["refresh"]
