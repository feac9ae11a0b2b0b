"""The event stream a world's shoppers produce, interleaving:

* shopping sessions: views mostly in the user's favourite categories, with a funnel of roughly
  view 100 → cart 8 → purchase 3, likes, occasional hides (negative feedback), and carts in one
  category pulling the next view towards a complementary one (phone → phone case), so checkouts
  hold co-purchased pairs an item-item recommender can find;
* shares to one of the sharer's followers, some of whom later open the item, buy it or share it
  on again (cascades);
* follow / unfollow events that keep evolving the graph;
* live streams hosted by merchants or influencers: bursts of views, likes, carts and purchases
  on the featured item, all carrying the stream's ``stream_id``.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Final

from models.events import Event, EventType
from models.simulator.world import World, cumulative, pick

#: Default simulated start time (2023-11-14T22:13:20Z): fixed, so streams are reproducible.
DEFAULT_START_TS: Final = 1_700_000_000.0

# A simulated action before it gets an id and a timestamp: type, user, item, target, stream
# (indices; -1 = none). Tuples keep the hot loop cheap.
_Raw = tuple[EventType, int, int, int, str | None]

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
_P_OPEN_SHARE: Final = 0.5  # a recipient opens a shared item at all

# Steps are event counts: delays are measured in "other events in between", so the stream's
# content is the same whatever the clock speed (mean_gap_s only scales the timestamps).
_MEAN_ACTION_DELAY: Final = 3.0  # view → like/cart of the same item
_MEAN_THINK_DELAY: Final = 25.0  # between two views of a session
_MEAN_SHARE_DELAY: Final = 400.0  # share → recipient opens it
_MEAN_BURST_GAP: Final = 60.0  # between two bursts of a live stream

# What a spawn (a step with nothing due) starts.
_P_STREAM_START: Final = 0.004
_MAX_LIVE: Final = 2
_P_FOLLOW: Final = 0.03
_P_UNFOLLOW: Final = 0.006


class _Activity:
    """Something in progress that emits one event each time it fires."""

    __slots__ = ()

    def fire(self, sim: _Sim, step: int) -> _Raw | None:  # pragma: no cover - abstract
        raise NotImplementedError


class _Session(_Activity):
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

    def fire(self, sim: _Sim, step: int) -> _Raw | None:
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

    def _view(self, sim: _Sim) -> None:
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

    def _category(self, sim: _Sim) -> int:
        rng, ix = sim.rng, sim.ix
        r = rng.random()
        if self.last_cat >= 0 and r < 0.35:  # keep browsing the same shelf
            return self.last_cat
        favs = ix.user_favs[self.user]
        if favs and r < 0.88:
            return favs[pick(rng, ix.user_fav_cum[self.user])]
        return ix.browse_cats[pick(rng, ix.browse_cum)]

    def _checkout(self, sim: _Sim) -> None:
        rng = sim.rng
        if rng.random() < _P_CHECKOUT:
            for item in dict.fromkeys(self.cart):
                if rng.random() < _P_BUY_CARTED:
                    self.queue.append((PURCHASE, item))
        self.cart.clear()


class _LiveStream(_Activity):
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
        self.pending: deque[_Raw] = deque()

    def fire(self, sim: _Sim, step: int) -> _Raw | None:
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

    def _burst(self, sim: _Sim) -> None:
        rng, sid = sim.rng, self.stream_id
        featured = self.items[pick(rng, self.cum)]
        crowd = rng.sample(self.viewers, k=min(len(self.viewers), rng.randint(6, 25)))
        views: list[_Raw] = [(VIEW, v, featured, -1, sid) for v in crowd]
        likes: list[_Raw] = [(LIKE, v, featured, -1, sid) for v in crowd if rng.random() < 0.3]
        follows: list[_Raw] = []
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


class _Sim:
    """Mutable state of one stream: the evolving follow graph and the activity schedule."""

    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        self.ix = world._ix
        self.seed = seed
        self.rng = random.Random(f"socialrec-events-{seed}")
        n = len(world.users)
        # dicts as insertion-ordered sets: O(1) add/remove and a reproducible iteration order.
        self.following: list[dict[int, None]] = [dict.fromkeys(f) for f in world.following]
        self.followers: list[dict[int, None]] = [{} for _ in range(n)]
        for u, fol in enumerate(world.following):
            for v in fol:
                self.followers[v][u] = None
        # Preferential-attachment pool for new follows (unfollows are not removed: cheap, and
        # popularity is sticky anyway).
        self.pa_pool: list[int] = list(range(n)) + [v for f in world.following for v in f]
        self.heap: list[tuple[int, int, _Activity]] = []
        self.seq = 0
        self.in_session = bytearray(n)
        self.live = 0
        self.streams = 0

    # --- scheduling -----------------------------------------------------------------------

    def schedule(self, step: int, delay: int, activity: _Activity) -> None:
        heapq.heappush(self.heap, (step + delay, self.seq, activity))
        self.seq += 1

    def delay(self, mean: float) -> int:
        return 1 + int(self.rng.expovariate(1.0 / mean))

    def next_raw(self, step: int) -> _Raw:
        """The event for this step: whatever is due, else something new starts."""
        heap = self.heap
        while True:
            if heap and heap[0][0] <= step:
                raw = heapq.heappop(heap)[2].fire(self, step)
            else:
                raw = self.spawn(step)
            if raw is not None:
                return raw

    def spawn(self, step: int) -> _Raw | None:
        rng = self.rng
        r = rng.random()
        if r < _P_STREAM_START:
            stream = self.start_stream() if self.live < _MAX_LIVE else None
            if stream is not None:
                return stream.fire(self, step)
        elif r < _P_STREAM_START + _P_FOLLOW:
            user = self.active_user()
            for _ in range(4):
                target = rng.choice(self.pa_pool)
                if self.follow(user, target):
                    self.pa_pool.append(target)
                    return (FOLLOW, user, -1, target, None)
        elif r < _P_STREAM_START + _P_FOLLOW + _P_UNFOLLOW:
            user = self.active_user()
            if self.following[user]:
                target = rng.choice(list(self.following[user]))
                del self.following[user][target]
                del self.followers[target][user]
                return (UNFOLLOW, user, -1, target, None)
        user = self.active_user()
        for _ in range(3):  # prefer someone not already mid-session
            if not self.in_session[user]:
                break
            user = self.active_user()
        return self.start_session(user, step, views=1 + int(rng.expovariate(1 / 5.0)))

    # --- world helpers --------------------------------------------------------------------

    def active_user(self) -> int:
        return pick(self.rng, self.ix.activity_cum)

    def item_in(self, category: int) -> int:
        ix = self.ix
        return ix.cat_items[category][pick(self.rng, ix.cat_cum[category])]

    def follow(self, user: int, target: int) -> bool:
        if user == target or target in self.following[user]:
            return False
        self.following[user][target] = None
        self.followers[target][user] = None
        return True

    def start_session(self, user: int, step: int, views: int, forced: int = -1) -> _Raw | None:
        self.in_session[user] = 1
        return _Session(user, views, forced).fire(self, step)

    def end_session(self, user: int) -> None:
        self.in_session[user] = 0

    def share(self, user: int, item: int, step: int) -> _Raw | None:
        """Share ``item`` with one of ``user``'s current followers; maybe they open it later."""
        followers = self.followers[user]
        if not followers:
            return None
        rng = self.rng
        target = rng.choice(list(followers))
        if rng.random() < _P_OPEN_SHARE:
            self.schedule(step, self.delay(_MEAN_SHARE_DELAY), _OpenShare(target, item))
        return (SHARE, user, item, target, None)

    def start_stream(self) -> _LiveStream | None:
        rng, ix, world = self.rng, self.ix, self.world
        if rng.random() < 0.6:  # a merchant selling its own catalogue
            m = rng.randrange(len(world.merchants))
            items = ix.merchant_items[m][:30]
            cats = [ix.item_category[i] for i in items]
            host = -1
            audience: list[int] = []
        else:  # an influencer featuring popular items from their favourite categories
            host = rng.choice(world.influencers)
            cats = list(ix.user_favs[host])
            items = tuple(i for c in cats for i in ix.cat_items[c][:8])
            audience = list(self.followers[host])
            audience = rng.sample(audience, k=min(len(audience), 120))
        if not items:
            return None
        for c in dict.fromkeys(cats):
            fans = ix.fans[c]
            audience.extend(rng.sample(fans, k=min(len(fans), 40)))
        audience.extend(self.active_user() for _ in range(10))
        viewers = list(dict.fromkeys(audience))
        self.live += 1
        self.streams += 1
        sid = f"live-{self.seed}-{self.streams}"
        return _LiveStream(sid, host, items, viewers, bursts=rng.randint(4, 12))


class _OpenShare(_Activity):
    """A share recipient getting round to the shared item: a short session that starts on it,
    with the usual funnel (including sharing it on: cascades) from there."""

    __slots__ = ("item", "recipient")

    def __init__(self, recipient: int, item: int) -> None:
        self.recipient, self.item = recipient, item

    def fire(self, sim: _Sim, step: int) -> _Raw | None:
        views = int(sim.rng.expovariate(1 / 2.0))
        return sim.start_session(self.recipient, step, views=views, forced=self.item)


def generate_events(
    world: World,
    seed: int,
    count: int | None,
    start_ts: float = DEFAULT_START_TS,
    mean_gap_s: float = 0.5,
    *,
    replay_graph: bool = False,
    id_prefix: str | None = None,
) -> Iterator[Event]:
    """Yield ``count`` events (forever if ``None``) in time order, from ``start_ts``.

    Gaps between events are exponential with mean ``mean_gap_s`` (a Poisson process; 0 puts
    every event at ``start_ts``). The clock has its own generator, so the events' content does
    not depend on ``mean_gap_s``: only their timestamps scale. Event ids are
    ``sim-{seed}-{n}``, or ``{id_prefix}{n}`` (a live run tags its ids so the worker's
    de-duplication does not swallow a re-run with the same seed). With ``replay_graph`` the
    stream starts with one ``follow`` event per edge of the world's initial graph, so a
    consumer can rebuild it.

    >>> from models.simulator.build import generate_world
    >>> w = generate_world(seed=2, users=30, items=100)
    >>> evs = list(generate_events(w, seed=2, count=3, start_ts=1_700_000_000.0, mean_gap_s=0))
    >>> [(e.event_id, e.ts) for e in evs]
    [('sim-2-0', 1700000000.0), ('sim-2-1', 1700000000.0), ('sim-2-2', 1700000000.0)]
    """
    if mean_gap_s < 0 or (count is not None and count < 0):
        raise ValueError("count and mean_gap_s must not be negative")
    sim = _Sim(world, seed)
    clock = random.Random(f"socialrec-clock-{seed}")
    rate = 1.0 / mean_gap_s if mean_gap_s > 0 else 0.0
    user_ids = [u.user_id for u in world.users]
    item_ids = [i.item_id for i in world.items]
    prefix = f"sim-{seed}-" if id_prefix is None else id_prefix
    graph: Iterator[_Raw] = iter(())
    if replay_graph:
        graph = ((FOLLOW, u, -1, v, None) for u, fol in enumerate(world.following) for v in fol)
    elapsed = 0.0
    steps = itertools.count() if count is None else range(count)
    step = 0  # simulation steps exclude the replayed graph, so replay doesn't shift content
    for n in steps:
        raw = next(graph, None)
        if raw is None:
            raw = sim.next_raw(step)
            step += 1
        kind, user, item, target, stream = raw
        yield Event(
            event_id=f"{prefix}{n}",
            type=kind,
            user_id=user_ids[user],
            ts=round(start_ts + elapsed, 3),
            item_id=item_ids[item] if item >= 0 else None,
            target_user_id=user_ids[target] if target >= 0 else None,
            stream_id=stream,
        )
        if rate:
            elapsed += clock.expovariate(rate)
