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
from collections.abc import Iterator
from typing import Final

from models.events import Event
from models.simulator.activities import (
    FOLLOW,
    SHARE,
    UNFOLLOW,
    Activity,
    LiveStream,
    OpenShare,
    Raw,
    Session,
)
from models.simulator.world import World, pick

#: Default simulated start time (2023-11-14T22:13:20Z): fixed, so streams are reproducible.
DEFAULT_START_TS: Final = 1_700_000_000.0

# A share's recipient (delays in steps, as in .activities).
_P_OPEN_SHARE: Final = 0.5  # a recipient opens a shared item at all
_MEAN_SHARE_DELAY: Final = 400.0  # share → recipient opens it

# What a spawn (a step with nothing due) starts.
_P_STREAM_START: Final = 0.004
_MAX_LIVE: Final = 2
_P_FOLLOW: Final = 0.03
_P_UNFOLLOW: Final = 0.006


class Sim:
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
        self.heap: list[tuple[int, int, Activity]] = []
        self.seq = 0
        self.in_session = bytearray(n)
        self.live = 0
        self.streams = 0

    # --- scheduling -----------------------------------------------------------------------

    def schedule(self, step: int, delay: int, activity: Activity) -> None:
        heapq.heappush(self.heap, (step + delay, self.seq, activity))
        self.seq += 1

    def delay(self, mean: float) -> int:
        return 1 + int(self.rng.expovariate(1.0 / mean))

    def next_raw(self, step: int) -> Raw:
        """The event for this step: whatever is due, else something new starts."""
        heap = self.heap
        while True:
            if heap and heap[0][0] <= step:
                raw = heapq.heappop(heap)[2].fire(self, step)
            else:
                raw = self.spawn(step)
            if raw is not None:
                return raw

    def spawn(self, step: int) -> Raw | None:
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

    def start_session(self, user: int, step: int, views: int, forced: int = -1) -> Raw | None:
        self.in_session[user] = 1
        return Session(user, views, forced).fire(self, step)

    def end_session(self, user: int) -> None:
        self.in_session[user] = 0

    def share(self, user: int, item: int, step: int) -> Raw | None:
        """Share ``item`` with one of ``user``'s current followers; maybe they open it later."""
        followers = self.followers[user]
        if not followers:
            return None
        rng = self.rng
        target = rng.choice(list(followers))
        if rng.random() < _P_OPEN_SHARE:
            self.schedule(step, self.delay(_MEAN_SHARE_DELAY), OpenShare(target, item))
        return (SHARE, user, item, target, None)

    def start_stream(self) -> LiveStream | None:
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
        return LiveStream(sid, host, items, viewers, bursts=rng.randint(4, 12))


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
    sim = Sim(world, seed)
    clock = random.Random(f"socialrec-clock-{seed}")
    rate = 1.0 / mean_gap_s if mean_gap_s > 0 else 0.0
    user_ids = [u.user_id for u in world.users]
    item_ids = [i.item_id for i in world.items]
    prefix = f"sim-{seed}-" if id_prefix is None else id_prefix
    graph: Iterator[Raw] = iter(())
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
