"""Merchant counts are added once, through a Redis outage: an attempt whose answer was lost
(the server added the counts, the worker saw a dropped connection) is tried again with the same
token and adds nothing more; the markers that say so are deleted by the next call, once the
answer arrived. On one Redis and on a Redis Cluster."""

from __future__ import annotations

from typing import Any, cast

import redis.exceptions

from models.events import Event, EventType
from streams.keys import Keys
from streams.metrics import WorkerMetrics
from streams.runtime.analytics import EXPOSURE, MARKER, MerchantAnalytics
from streams.runtime.outage import wait_out

NOW = 1_800_000_000.0
KEYS = Keys()


class _AnswerLostOnce:
    """The client, but the first pipeline's answer is lost after the server ran it."""

    def __init__(self, client: Any) -> None:
        self.client, self.lost = client, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def pipeline(self, transaction: bool = True) -> Any:
        outer, pipe = self, self.client.pipeline(transaction=transaction)
        execute = pipe.execute

        async def execute_then_drop(*args: Any, **kwargs: Any) -> Any:
            replies = await execute(*args, **kwargs)
            if not outer.lost:
                outer.lost = True
                raise redis.exceptions.ConnectionError("connection reset by peer")
            return replies

        pipe.execute = execute_then_drop
        return pipe


async def test_counts_are_added_once_when_an_answer_is_lost(real_client: Any) -> None:
    for item, merchant in (("lipstick", "m1"), ("mascara", "m1"), ("scarf", "m2")):
        await real_client.hset(KEYS.item(item, "meta"), mapping={"merchant_id": merchant})
    flaky = _AnswerLostOnce(real_client)
    analytics = MerchantAnalytics(cast(Any, flaky), KEYS)
    flaky.lost = True  # the merchants read first, so that the answer lost is the counts'
    await analytics.merchants(["lipstick", "mascara", "scarf", "tv"])
    flaky.lost = False
    views = [
        Event(f"e{n}", EventType.VIEW, f"u{n}", NOW, item_id=item)
        for n, item in enumerate(("lipstick", "mascara", "scarf", "lipstick"))
    ]
    metrics = WorkerMetrics()

    slots = ["lipstick", "scarf", "tv"]
    # The token is the batch's: every attempt of it carries the same one.
    await wait_out(
        lambda: analytics.record(views, slots, NOW, "batch-1"),
        metrics,
        "merchant counts",
        backoff_s=(0.0,),
    )
    assert flaky.lost  # the first attempt's answer was lost, and it was tried again
    buckets = [KEYS.merchant_counts(int(NOW // 60.0), m) for m in ("m1", "m2", "")]
    for key in buckets:  # each bucket's marker stays until the next call
        fields = [f.decode() for f in await real_client.hkeys(key)]
        assert [f for f in fields if f.startswith(MARKER)] == [MARKER + "batch-1"], key
    await analytics.record([], [], NOW, "batch-2")  # nothing to count: only the deletions

    m1 = await analytics.window("m1", NOW, 60.0)
    m2 = await analytics.window("m2", NOW, 60.0)
    assert m1.counts == {"view": 3, EXPOSURE: 1}
    assert m2.counts == {"view": 1, EXPOSURE: 1}
    assert m1.total_exposure == 3
    for key in buckets:
        fields = [f.decode() for f in await real_client.hkeys(key)]
        assert fields  # the bucket is there, and holds counts only
        assert not [f for f in fields if f.startswith(MARKER)], key
