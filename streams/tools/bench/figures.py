"""The statistics every bench run reports: nearest-rank quantiles, in milliseconds.

>>> summarise([0.004, 0.001, 0.002, 0.003], events=4, first=10.0, last=12.0)["p50_ms"]
2.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.tools.bench.readers import ReadLoad


def ms(seconds: float) -> float:
    """Milliseconds rounded to 0.1 (Kafka timestamps are 1 ms)."""
    return round(seconds * 1000.0, 1)


def tail_ms(ordered: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max of pre-sorted seconds, in ms (None when there are none)."""
    if not ordered:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": ms(quantile(ordered, 0.5)),
        "p99_ms": ms(quantile(ordered, 0.99)),
        "max_ms": ms(ordered[-1]),
    }


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of pre-sorted values."""
    index = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def summarise(
    latencies: Sequence[float], *, events: int, first: float, last: float
) -> dict[str, Any]:
    """Figures for one run; milliseconds rounded to 0.1 (Kafka timestamps are 1 ms)."""
    ordered = sorted(latencies)
    span = last - first
    return {
        "events": events,
        "measured_outputs": len(ordered),
        "publish_span_s": round(span, 3),
        "events_per_s": round(events / span, 1) if span > 0 else None,
        **tail_ms(ordered),
        "mean_ms": ms(sum(ordered) / len(ordered)) if ordered else None,
    }


def summarise_reads(raw: dict[str, Any], load: ReadLoad) -> dict[str, Any]:
    """The readers' figures: requests per second, and p50/p99/max per kind of read."""
    latencies: dict[str, list[float]] = raw["latencies"]
    total = sum(len(values) for values in latencies.values())
    wall = raw["wall_s"]
    return {
        "readers": load.readers,
        "rate": load.rate,  # requests/s asked of them in all; None: closed-loop
        "seconds": round(wall, 1),
        "requests_per_s": round(total / wall, 1) if wall > 0 else None,
        "failed": raw["failed"],
        **{
            kind: {"requests": len(values), **tail_ms(values)} for kind, values in latencies.items()
        },
    }
