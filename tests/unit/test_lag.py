"""The consumer lag probe's bookkeeping: failures never escape, revoked partitions vanish."""

from __future__ import annotations

from typing import Any

from streams.config import Settings
from streams.metrics import WorkerMetrics
from streams.runtime.lag import ConsumerLagProbe


def broken_assignment() -> set[Any]:
    raise RuntimeError("consumer not yet started")


def _lag(metrics: WorkerMetrics, partition: str) -> float | None:
    return metrics.registry.get_sample_value(
        "socialrec_consumer_lag_messages", {"partition": partition}
    )


async def test_a_failed_probe_is_counted_and_skipped() -> None:
    metrics = WorkerMetrics()
    probe = ConsumerLagProbe(Settings(), metrics, broken_assignment, "g")
    assert await probe.probe() is None
    assert await probe.probe() is None
    assert metrics.registry.get_sample_value("socialrec_consumer_lag_errors_total") == 2


def test_revoked_partitions_stop_being_reported() -> None:
    metrics = WorkerMetrics()
    probe = ConsumerLagProbe(Settings(), metrics, broken_assignment, "g")
    probe._publish({0: 5, 1: 7})
    assert (_lag(metrics, "0"), _lag(metrics, "1")) == (5, 7)
    probe._publish({1: 2})  # partition 0 moved to another worker
    assert (_lag(metrics, "0"), _lag(metrics, "1")) == (None, 2)
