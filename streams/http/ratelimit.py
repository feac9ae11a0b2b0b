"""Token buckets per caller, in the worker's memory.

Why in memory and not in Redis: a refused request must cost less than a served one, so the
check makes no round trip. The price is that each worker counts on its own: behind a load
balancer over N workers, a key gets up to N times ``rate`` (the README says so).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """``rate`` tokens per second into a bucket of ``burst`` per name; a request takes
    ``cost`` tokens or is told how long to wait.

    >>> limiter = RateLimiter(rate=1.0, burst=2.0)
    >>> limiter.take("k", 1.0, now=0.0), limiter.take("k", 1.0, now=0.0)
    (0.0, 0.0)
    >>> limiter.take("k", 1.0, now=0.0)
    1.0
    >>> limiter.take("k", 1.0, now=1.0)
    0.0

    A request dearer than the whole bucket is charged the bucket (it would never pass else).
    """

    def __init__(self, rate: float, burst: float, max_names: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        # Bounded: names are configured keys and valid host links, but a long-lived worker
        # sees links come and go; the least recently used bucket is forgotten (it was full).
        self.max_names = max_names
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, name: str, cost: float, now: float) -> float:
        """0.0 when the request may go (its tokens are taken), else the seconds to wait."""
        cost = min(cost, self.burst)
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(self.burst, now)
            while len(self._buckets) > self.max_names:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(name)
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.at = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate
