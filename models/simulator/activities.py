"""What fires in the event stream (:mod:`.stream` schedules them): shopping sessions with
their funnel, live-stream bursts, and share recipients opening the shared item.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from models.events import EventType
from models.simulator.world import cumulative, pick

if TYPE_CHECKING:
    from models.simulator.stream import Sim

# A simulated action before it gets an id and a timestamp: type, user, item, target, stream
# (indices; -1 = none). Tuples keep the hot loop cheap.
Raw = tuple[EventType, int, int, int, str | None]

VIEW, LIKE, SHARE, CART, PURCHASE, HIDE, FOLLOW, UNFOLLOW = (
    EventType.VIEW,
    EventType.LIKE,
    EventType.SHARE,
    EventType.CART,
    EventType.PURCHASE,
    EventType.HIDE,
    EventType.FOLLOW,
    EventType.UNFOLLOW,
)

# Funnel probabilities per view, by how the shopper got to the item. Tuned so that over a
# whole stream views : carts : purchases ≈ 100 : 8 : 3 (tests check the band).
_NORMAL, _COMPLEMENT, _SHARED = 0, 1, 2
_P_HIDE: Final = 0.015
_P_LIKE: Final = (0.08, 0.10, 0.25)
_P_SHARE: Final = (0.015, 0.01, 0.06)  # doubled after a like
_P_CART: Final = (0.068, 0.22, 0.12)
_P_COMPLEMENT_NEXT: Final = 0.6  # after a cart, look at a complementary category next
_P_CHECKOUT: Final = 0.6  # a session with a cart ends in checkout...
_P_BUY_CARTED: Final = 0.7  # ...buying each carted item with this probability

# Steps are event counts: delays are measured in "other events in between", so the stream's
# content is the same whatever the clock speed (mean_gap_s only scales the timestamps).
_MEAN_ACTION_DELAY: Final = 3.0  # view → like/cart of the same item
_MEAN_THINK_DELAY: Final = 25.0  # between two views of a session
_MEAN_BURST_GAP: Final = 60.0  # between two bursts of a live stream


class Activity:
    """Something in progress that emits one event each time it fires."""

    __slots__ = ()

    def fire(self, sim: Sim, step: int) -> Raw | None:  # pragma: no cover - abstract
        raise NotImplementedError


class Session(Activity):
    """A shopper browsing: views, reactions to each viewed item, and a checkout at the end."""

    __slots__ = ("cart", "forced", "last_cat", "next_cat", "queue", "user", "views_left")

    def __init__(self, user: int, views: int, forced: int = -1) -> None:
        self.user = user
        self.views_left = views
        self.forced = forced  # an item the session starts on (opened from a share)
        self.queue: deque[tuple[EventType, int]] = deque()
        self.cart: list[int] = []
        self.next_cat = -1
        self.last_cat = -1

    def fire(self, sim: Sim, step: int) -> Raw | None:
        if not self.queue:
            if self.forced >= 0 or self.views_left > 0:
                self._view(sim)
            elif self.cart:
                self._checkout(sim)
        if not self.queue:
            sim.end_session(self.user)
            return None
        kind, item = self.queue.popleft()
        mean = _MEAN_ACTION_DELAY if self.queue else _MEAN_THINK_DELAY
        sim.schedule(step, sim.delay(mean), self)
        if kind is SHARE:
            return sim.share(self.user, item, step)
        return (kind, self.user, item, -1, None)

    def _view(self, sim: Sim) -> None:
        rng, ix = sim.rng, sim.ix
        if self.forced >= 0:
            item, ctx = self.forced, _SHARED
            self.forced = -1
        elif self.next_cat >= 0:
            item, ctx = sim.item_in(self.next_cat), _COMPLEMENT
            self.next_cat = -1
            self.views_left -= 1
        else:
            item, ctx = sim.item_in(self._category(sim)), _NORMAL
            self.views_left -= 1
        cat = ix.item_category[item]
        self.last_cat = cat
        queue = self.queue
        queue.append((VIEW, item))
        if rng.random() < _P_HIDE:
            queue.append((HIDE, item))
            return
        liked = rng.random() < _P_LIKE[ctx]
        if liked:
            queue.append((LIKE, item))
        if rng.random() < _P_SHARE[ctx] * (2 if liked else 1):
            queue.append((SHARE, item))
        if rng.random() < _P_CART[ctx]:
            queue.append((CART, item))
            self.cart.append(item)
            complements = ix.complements[cat]
            if complements and rng.random() < _P_COMPLEMENT_NEXT:
                self.next_cat = rng.choice(complements)
                self.views_left = max(self.views_left, 1)

    def _category(self, sim: Sim) -> int:
        rng, ix = sim.rng, sim.ix
        r = rng.random()
        if self.last_cat >= 0 and r < 0.35:  # keep browsing the same shelf
            return self.last_cat
        favs = ix.user_favs[self.user]
        if favs and r < 0.88:
            return favs[pick(rng, ix.user_fav_cum[self.user])]
        return ix.browse_cats[pick(rng, ix.browse_cum)]

    def _checkout(self, sim: Sim) -> None:
        rng = sim.rng
        if rng.random() < _P_CHECKOUT:
            for item in dict.fromkeys(self.cart):
                if rng.random() < _P_BUY_CARTED:
                    self.queue.append((PURCHASE, item))
        self.cart.clear()


class LiveStream(Activity):
    """A host's live stream: every so often a burst of viewers reacts to the featured item."""

    __slots__ = ("bursts_left", "cum", "host", "items", "pending", "stream_id", "viewers")

    def __init__(
        self, stream_id: str, host: int, items: Sequence[int], viewers: list[int], bursts: int
    ) -> None:
        self.stream_id = stream_id
        self.host = host  # user index of an influencer host, -1 for a merchant's own stream
        self.items = tuple(items)
        self.cum = cumulative([1.0 / (k + 1) for k in range(len(self.items))])
        self.viewers = viewers
        self.bursts_left = bursts
        self.pending: deque[Raw] = deque()

    def fire(self, sim: Sim, step: int) -> Raw | None:
        if not self.pending:
            if self.bursts_left <= 0:
                sim.live -= 1
                return None
            self.bursts_left -= 1
            self._burst(sim)
        raw = self.pending.popleft()
        # Delay 0 keeps the burst contiguous; the next burst comes after a pause.
        sim.schedule(step, 0 if self.pending else sim.delay(_MEAN_BURST_GAP), self)
        if raw[0] is FOLLOW and not sim.follow(raw[1], raw[3]):
            return None  # already following (e.g. followed elsewhere since the burst began)
        return raw

    def _burst(self, sim: Sim) -> None:
        rng, sid = sim.rng, self.stream_id
        featured = self.items[pick(rng, self.cum)]
        crowd = rng.sample(self.viewers, k=min(len(self.viewers), rng.randint(6, 25)))
        views: list[Raw] = [(VIEW, v, featured, -1, sid) for v in crowd]
        likes: list[Raw] = [(LIKE, v, featured, -1, sid) for v in crowd if rng.random() < 0.3]
        follows: list[Raw] = []
        if self.host >= 0:
            follows = [
                (FOLLOW, v, -1, self.host, sid)
                for v in crowd
                if v != self.host and rng.random() < 0.04
            ]
        carts = [v for v in crowd if rng.random() < 0.12]
        buys = [v for v in carts if rng.random() < 0.5]  # flash deals convert well
        self.pending.extend(views)
        self.pending.extend(likes)
        self.pending.extend(follows)
        self.pending.extend((CART, v, featured, -1, sid) for v in carts)
        self.pending.extend((PURCHASE, v, featured, -1, sid) for v in buys)


class OpenShare(Activity):
    """A share recipient getting round to the shared item: a short session that starts on it,
    with the usual funnel (including sharing it on: cascades) from there."""

    __slots__ = ("item", "recipient")

    def __init__(self, recipient: int, item: int) -> None:
        self.recipient, self.item = recipient, item

    def fire(self, sim: Sim, step: int) -> Raw | None:
        views = int(sim.rng.expovariate(1 / 2.0))
        return sim.start_session(self.recipient, step, views=views, forced=self.item)
