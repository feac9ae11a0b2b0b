"""Consumer lag of the ``events`` topic, per partition this worker owns.

Lag here is what Kafka's own tools call it: the log end offset minus the consumer group's
committed offset, i.e. the events a crash right now would redeliver, and the backlog the
worker has not finished. Faust gives the end offsets (``app.consumer.highwaters``, run on its
consumer thread); the committed offsets come from the group coordinator through an admin
client, because Faust's own bookkeeping of them is private. A probe that fails (broker away,
rebalance in progress) is counted, logged once per run of failures, and skipped: the gauges
keep their last values and the worker goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.security import kafka_client_kwargs

log = logging.getLogger(__name__)

#: Seconds between probes (a Faust timer in the worker).
LAG_INTERVAL_S = 5.0
#: A probe that takes longer than this is abandoned (and counted as failed).
PROBE_TIMEOUT_S = 4.0


def partition_lag(end: int, committed: int | None, earliest: int) -> int:
    """Messages of one partition not yet committed by the group.

    Without a committed offset the group starts from the earliest offset still in the log
    (the worker reads from the earliest), so everything retained counts.

    >>> partition_lag(end=120, committed=100, earliest=0)
    20
    >>> partition_lag(end=120, committed=None, earliest=20)
    100
    >>> partition_lag(end=5, committed=9, earliest=0)  # an end offset older than the commit
    0
    """
    start = earliest if committed is None or committed < 0 else committed
    return max(0, end - start)


def lags(
    ends: Mapping[int, int], committed: Mapping[int, int | None], earliest: Mapping[int, int]
) -> dict[int, int]:
    """Lag of every partition that has an end offset.

    >>> lags({0: 10, 1: 7}, {0: 4}, {0: 0, 1: 2})
    {0: 6, 1: 5}
    """
    return {p: partition_lag(end, committed.get(p), earliest.get(p, 0)) for p, end in ends.items()}


class ConsumerLagProbe:
    """Reads the lag of the worker's assigned ``events`` partitions into the metrics."""

    def __init__(
        self,
        settings: Settings,
        metrics: WorkerMetrics,
        assignment: Callable[[], Iterable[TopicPartition]],
        group: str,
        learner: str | None = None,
    ) -> None:
        """``group`` consumes the partitions; ``learner``, the learner's group if one runs."""
        self.settings = settings
        self.metrics = metrics
        self.assignment = assignment  # the events partitions this worker owns now
        self.group = group  # the consumer group that consumes them
        self.learner = learner
        self.topic = settings.topic("events")
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None  # reads end and earliest offsets
        self._reported: set[int] = set()
        self._failing = False

    async def probe(self) -> dict[int, int] | None:
        """One probe; returns the lags set, or None if it failed (never raises)."""
        try:
            found = await asyncio.wait_for(self._read(), PROBE_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the worker must not die of its own monitoring
            self.metrics.consumer_lag_errors.inc()
            if not self._failing:
                log.warning("consumer lag probe failed (%s); skipping", type(exc).__name__)
            self._failing = True
            await self._drop_admin()
            return None
        self._failing = False
        self._publish(found)
        return found

    async def _read(self) -> dict[int, int]:
        assigned = [TopicPartition(tp.topic, tp.partition) for tp in self.assignment()]
        if not assigned:
            return {}
        if self._offsets is None:
            offsets = AIOKafkaConsumer(**kafka_client_kwargs(self.settings))
            await offsets.start()
            self._offsets = offsets
        consumer = self._offsets
        ends = {
            tp.partition: int(off) for tp, off in (await consumer.end_offsets(assigned)).items()
        }
        partitions = [tp.partition for tp in assigned]
        committed = await self._committed(partitions, self.group)
        learnt = await self._committed(partitions, self.learner) if self.learner else {}
        missing = [
            tp
            for tp in assigned
            if committed.get(tp.partition) is None
            or (self.learner and learnt.get(tp.partition) is None)
        ]
        earliest: dict[int, int] = {}
        if missing:
            found = await consumer.beginning_offsets(missing)
            earliest = {tp.partition: int(off) for tp, off in found.items()}
        if self.learner:
            self.metrics.learner_lag_messages.set(sum(lags(ends, learnt, earliest).values()))
        return lags(ends, committed, earliest)

    async def _committed(self, partitions: Iterable[int], group: str) -> dict[int, int | None]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**kafka_client_kwargs(self.settings))
            await admin.start()
            self._admin = admin
        tps = [TopicPartition(self.topic, p) for p in partitions]
        offsets = await self._admin.list_consumer_group_offsets(group, partitions=tps)
        return {
            tp.partition: (meta.offset if meta.offset >= 0 else None)
            for tp, meta in offsets.items()
        }

    def _publish(self, found: Mapping[int, int]) -> None:
        gauge = self.metrics.consumer_lag
        for partition, lag in found.items():
            gauge.labels(str(partition)).set(lag)
        for gone in self._reported - set(found):  # revoked: another worker reports it now
            gauge.remove(str(gone))
        self._reported = set(found)

    async def _drop_admin(self) -> None:
        offsets, self._offsets = self._offsets, None
        admin, self._admin = self._admin, None
        for close in (offsets.stop if offsets else None, admin.close if admin else None):
            if close is None:
                continue
            try:
                await close()
            except Exception:  # closing a broken client may fail too; nothing to keep
                log.debug("closing a lag probe client failed", exc_info=True)

    async def close(self) -> None:
        await self._drop_admin()
