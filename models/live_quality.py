"""Live quality and fairness of what a worker publishes, over sliding windows.

Offline evaluation (``models/evaluation/``) replays a stream; these are the same measures
computed on the live stream, small enough to update on every published list and to read on
every Prometheus scrape:

- prequential hit rate: when a user acts on an item, was it in the list last published to
  them? (test-then-train, like ``socialrec eval``'s HR@10, but on real traffic);
- live ranking AUC: when the item acted on was in the list, the share of the list's other
  items ranked below it (the per-request AUC of the ranking over what was shown), averaged
  over the last hits;
- exposure Gini, long-tail share and catalogue coverage of the last N published lists.

Everything here is pure and bounded: per-user memory is an LRU of the last list per user that
an erasure can empty (:meth:`LastLists.forget`), and the fairness window keeps item ids only.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence

from models.evaluation import gini, long_tail_share, short_head


class LastLists:
    """The item ids last published to each user, for at most ``capacity`` users (LRU).

    A user pushed out (or never seen by this worker) has no list: their next event is not a
    request of the hit rate, rather than a miss that was never shown anything.

    >>> lists = LastLists(capacity=2)
    >>> lists.remember("ann", ["a", "b"]); lists.remember("bob", ["c"])
    >>> lists.remember("cid", ["d"])  # ann was least recently used: forgotten
    >>> lists.get("ann") is None, lists.get("bob")
    (True, frozenset({'c'}))
    >>> lists.forget(["bob", "zed"]), len(lists)
    (1, 1)
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("LastLists capacity must be at least 1")
        self.capacity = capacity
        self._lists: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def remember(self, user_id: str, item_ids: Iterable[str]) -> None:
        self._lists[user_id] = tuple(item_ids)
        self._lists.move_to_end(user_id)
        while len(self._lists) > self.capacity:
            self._lists.popitem(last=False)

    def get(self, user_id: str) -> frozenset[str] | None:
        shown = self._lists.get(user_id)
        return None if shown is None else frozenset(shown)

    def ranked(self, user_id: str) -> tuple[str, ...] | None:
        """The user's last list in its published order."""
        return self._lists.get(user_id)

    def forget(self, user_ids: Iterable[str]) -> int:
        """Drop these users' lists (erasure); returns how many were held."""
        return sum(self._lists.pop(u, None) is not None for u in user_ids)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._lists

    def users(self) -> list[str]:
        """The users a list is held for (a copy: safe to forget while going through it)."""
        return list(self._lists)

    def __len__(self) -> int:
        return len(self._lists)


class SlidingHitRate:
    """Share of the last ``window`` requests that were hits.

    >>> rate = SlidingHitRate(window=3)
    >>> for hit in (True, False, True, True):
    ...     rate.record(hit)
    >>> rate.hits, rate.requests, round(rate.value(), 4)
    (2, 3, 0.6667)
    >>> SlidingHitRate(window=3).value()
    0.0
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("SlidingHitRate window must be at least 1")
        self._outcomes: deque[bool] = deque(maxlen=window)
        self.hits = 0

    def record(self, hit: bool) -> None:
        outcomes = self._outcomes
        if len(outcomes) == outcomes.maxlen and outcomes[0]:
            self.hits -= 1
        outcomes.append(hit)
        self.hits += hit

    @property
    def requests(self) -> int:
        return len(self._outcomes)

    def value(self) -> float:
        return self.hits / len(self._outcomes) if self._outcomes else 0.0


class SlidingMean:
    """Mean of the last ``window`` values recorded.

    >>> mean = SlidingMean(window=2)
    >>> for value in (1.0, 0.5, 0.0):
    ...     mean.record(value)
    >>> mean.count, mean.value()
    (2, 0.25)
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("SlidingMean window must be at least 1")
        self._values: deque[float] = deque(maxlen=window)

    def record(self, value: float) -> None:
        self._values.append(value)

    @property
    def count(self) -> int:
        return len(self._values)

    def value(self) -> float:
        return sum(self._values) / len(self._values) if self._values else 0.0


def shown_auc(ranked: Sequence[str], item_id: str) -> float | None:
    """The per-request AUC of a published ranking: the share of the other shown items ranked
    below the one the user acted on (None if it was not shown, or shown alone).

    >>> shown_auc(["a", "b", "c", "d", "e"], "b")
    0.75
    >>> shown_auc(["a", "b"], "z") is None, shown_auc(["a"], "a") is None
    (True, True)
    """
    if item_id not in ranked or len(ranked) < 2:
        return None
    below = len(ranked) - 1 - ranked.index(item_id)
    return below / (len(ranked) - 1)


class ExposureWindow:
    """Item exposure over the last ``window`` published lists, kept as running counts.

    Adding a list costs O(list length); the measures sort the distinct exposed items, so they
    are meant to be read at scrape time, not per list.

    >>> window = ExposureWindow(window=2)
    >>> window.add(["a", "b"]); window.add(["a", "c"]); window.add(["a", "d"])
    >>> sorted(window.exposure().items())  # the first list slid out
    [('a', 2), ('c', 1), ('d', 1)]
    >>> window.gini(), window.long_tail_share(), window.coverage(known_items=6)
    (0.1667, 0.5, 0.5)
    """

    def __init__(self, window: int, head_share: float = 0.2) -> None:
        if window < 1:
            raise ValueError("ExposureWindow window must be at least 1")
        if not 0.0 < head_share < 1.0:
            raise ValueError("head_share must be between 0 and 1")
        self.head_share = head_share
        self._lists: deque[tuple[str, ...]] = deque(maxlen=window)
        self._counts: Counter[str] = Counter()

    def add(self, item_ids: Sequence[str]) -> None:
        if len(self._lists) == self._lists.maxlen:
            for item in self._lists[0]:
                self._counts[item] -= 1
                if not self._counts[item]:
                    del self._counts[item]
        self._lists.append(tuple(item_ids))
        self._counts.update(item_ids)

    def exposure(self) -> dict[str, int]:
        return dict(self._counts)

    def distinct(self) -> int:
        return len(self._counts)

    def gini(self) -> float:
        """Gini of exposure among the items shown in the window (0: evenly spread)."""
        return round(gini(self._counts.values()), 4)

    def long_tail_share(self) -> float:
        """Share of slots given to items outside the most exposed ``head_share`` of them."""
        head = short_head(self._counts, self.head_share)
        return round(long_tail_share(self._counts, head), 4)

    def coverage(self, known_items: int) -> float:
        """Distinct items shown in the window over the items known (capped at 1)."""
        if known_items <= 0:
            return 0.0
        return round(min(1.0, len(self._counts) / known_items), 4)


class KnownItems:
    """Distinct item ids seen, up to ``capacity`` (then the count saturates): the denominator
    of coverage without asking the store.

    >>> known = KnownItems(capacity=2)
    >>> known.update(["a", "b", "a", "c"]); len(known)
    2
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: set[str] = set()

    def update(self, item_ids: Iterable[str]) -> None:
        items = self._items
        for item in item_ids:
            if len(items) >= self.capacity:
                return
            items.add(item)

    def __len__(self) -> int:
        return len(self._items)


class LiveQuality:
    """Everything a worker measures about its own published lists, in one place.

    >>> live = LiveQuality(users=100, requests=10, lists=10)
    >>> live.published("ann", ["a", "b"])
    >>> live.request("ann", "b"), live.request("ann", "z"), live.request("bob", "a")
    (True, False, None)
    >>> live.hit_rate.value(), live.coverage(), live.ranking_auc.value()
    (0.5, 0.6667, 0.0)
    >>> live.forget(["ann"]), live.request("ann", "a")
    (1, None)
    """

    def __init__(
        self,
        *,
        users: int = 100_000,
        requests: int = 1_000,
        lists: int = 1_000,
        known_items: int = 1_000_000,
        head_share: float = 0.2,
    ) -> None:
        self.last = LastLists(users)
        self.hit_rate = SlidingHitRate(requests)
        self.ranking_auc = SlidingMean(requests)
        self.exposure = ExposureWindow(lists, head_share)
        self.known = KnownItems(known_items)

    def request(self, user_id: str, item_id: str) -> bool | None:
        """The user acted on ``item_id``: a hit if it was in their last list, ``None`` if this
        worker holds no list for them (not counted)."""
        self.known.update((item_id,))
        ranked = self.last.ranked(user_id)
        if ranked is None:
            return None
        hit = item_id in ranked
        self.hit_rate.record(hit)
        auc = shown_auc(ranked, item_id)
        if auc is not None:
            self.ranking_auc.record(auc)
        return hit

    def published(self, user_id: str, item_ids: Sequence[str]) -> None:
        self.last.remember(user_id, item_ids)
        self.exposure.add(item_ids)
        self.known.update(item_ids)

    def forget(self, user_ids: Iterable[str]) -> int:
        """Erase these users' per-user memory (the windows hold no user ids)."""
        return self.last.forget(user_ids)

    def users(self) -> list[str]:
        """Every user this holds memory of (what an erasure by digest is matched against)."""
        return self.last.users()

    def coverage(self) -> float:
        return self.exposure.coverage(len(self.known))
