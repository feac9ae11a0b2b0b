"""Fans each published stream list out to the open live pages' bounded queues."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from models.trending import TrendingList

#: A subscriber's queue; past this many unsent lists the client is too slow and is dropped.
QUEUE_SIZE: Final = 16
#: Last published list kept per stream scope (for a page that connects in between ticks).
LAST_LISTS: Final = 1024


@dataclass(eq=False)
class Subscription:
    """One open events connection: its bounded queue, and whether it was cut off."""

    scope: str
    queue: asyncio.Queue[TrendingList | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    dropped: bool = False


class TrendingBroadcaster:
    """Fans each published list out to the subscribers of its scope, never blocking.

    At most ``max_subscribers`` connections at once, and ``max_per_scope`` of one stream
    (every open page holds a queue and, while its stream is quiet, reads the store twice a
    second; the per-stream cap keeps one popular or attacked stream from taking every slot):
    beyond that :meth:`subscribe` refuses, and the page is told to come back later.

    >>> b = TrendingBroadcaster(max_subscribers=2, max_per_scope=1)
    >>> sub = b.subscribe("stream:s1")
    >>> b.publish(TrendingList("stream:s1", 60.0, 10.0, None, ()), 10.0)
    >>> sub.queue.qsize(), b.last("stream:s1").scope
    (1, 'stream:s1')
    >>> b.subscribe("stream:s1") is None, b.subscribe("stream:s2") is None
    (True, False)
    >>> b.subscribe("stream:s3") is None
    True
    """

    def __init__(
        self, queue_size: int = QUEUE_SIZE, max_subscribers: int = 1_000, max_per_scope: int = 200
    ) -> None:
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self.max_per_scope = max_per_scope
        self._count = 0
        self._subscribers: dict[str, set[Subscription]] = {}
        self._last: OrderedDict[str, TrendingList] = OrderedDict()
        self.closed = False

    def subscribe(self, scope: str) -> Subscription | None:
        """A new connection's subscription, or None when either cap is reached."""
        if self._count >= self.max_subscribers or self.subscribers(scope) >= self.max_per_scope:
            return None
        sub = Subscription(scope, asyncio.Queue(self.queue_size))
        if self.closed:
            sub.dropped = True
        self._subscribers.setdefault(scope, set()).add(sub)
        self._count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.scope)
        if subs is not None and sub in subs:
            subs.discard(sub)
            self._count -= 1
            if not subs:
                del self._subscribers[sub.scope]

    def subscribers(self, scope: str) -> int:
        return len(self._subscribers.get(scope, ()))

    def last(self, scope: str) -> TrendingList | None:
        return self._last.get(scope)

    def publish(self, result: TrendingList, published_at: float) -> None:
        """The TrendingPublisher listener: remember stream lists, hand them to subscribers."""
        if result.scope.startswith("stream:"):
            self._last[result.scope] = result
            self._last.move_to_end(result.scope)
            while len(self._last) > LAST_LISTS:
                self._last.popitem(last=False)
        for sub in list(self._subscribers.get(result.scope, ())):
            try:
                sub.queue.put_nowait(result)
            except asyncio.QueueFull:
                # Too slow to keep up: cut it off rather than hold the publisher. The browser
                # reconnects and starts again from the current list.
                sub.dropped = True
                self.unsubscribe(sub)

    def close(self) -> None:
        """Ends every open events stream (the web server waits for them when stopping)."""
        self.closed = True
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.dropped = True
                # A full queue is fine: the reader sees ``dropped`` after its next item.
                with contextlib.suppress(asyncio.QueueFull):
                    sub.queue.put_nowait(None)
        self._subscribers.clear()
        self._count = 0
