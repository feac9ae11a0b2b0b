"""The sources beside item-CF and social proof, in memory: MF, content, user-CF, FBT and
item-kNN, each learning every item event and proposing its best candidates for a request; the
sizes and reasons they share with the worker (streams/sources/), and the replay that asks them
every request of a stream (:func:`source_requests`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from itertools import islice
from typing import NamedTuple, Protocol

from models.content import ContentModel
from models.evaluation import RequestSelector
from models.events import Event, EventType
from models.fbt import BasketTracker, basket_candidates
from models.itemknn import ItemKNN
from models.mf import OnlineMF
from models.recommend import Candidate, Pool, Reason, Source, source_pool
from models.recommend.pools import scored_pool
from models.state import PopularView, UserView
from models.usercf import UserCF

#: Candidates each source proposes per request (the assembly ranks their union).
CANDIDATES_PER_SOURCE = 50

#: Source sizes, shared with the worker (streams/sources/factory.py) so the evaluation replays
#: the configuration that runs. User-CF's bounds keep a request at about a millisecond.
MF_FACTORS = 32
MF_NEGATIVES = 4
MF_POOL = 2_000  # recent positives that popularity-sampled negatives are drawn from
USERCF_ITEMS_PER_USER = 30
USERCF_USERS_PER_ITEM = 50
USERCF_NEIGHBOUR_POOL = 30  # the worker reads the rows of the 30 users with most items in common
FOLLOWEE_ITEMS = 5  # followees' latest items as social proof (eval: the `followees` source)


#: The one reason of a candidate from MF, content or user-CF. Shared, not built per candidate
#: (hundreds per request): a lone reason's contribution is always its source's whole share
#: (see models.recommend.recommend), so the value here only has to be positive.
TASTE_MATCH = (Reason(None, 1.0, action="taste_match"),)
PROFILE_MATCH = (Reason(None, 1.0, action="profile_match"),)
SIMILAR_SHOPPERS = (Reason(None, 1.0, action="similar_shoppers"),)
POPULAR_NOW = (Reason(None, 1.0, action="popular"),)
CO_OCCURRING = (Reason(None, 1.0, action="bought_together_by_others"),)
FOLLOWED = (Reason(None, 1.0, action="followees_recent"),)


def popular_pool(popular: PopularView, excluded: AbstractSet[str]) -> Pool:
    """Popularity as a source of its own, so the learnt blend can weigh it: the best
    :data:`CANDIDATES_PER_SOURCE` popular items the user may be shown (eval's hybrid and the
    worker, with a learnt blend).

    >>> popular_pool(PopularView((("a", 3.0), ("b", 2.0)), 0.0), {"a"})
    {'b': (2.0, (Reason(item_id=None, contribution=1.0, user_id=None, action='popular'),))}
    """
    # Stops at the first CANDIDATES_PER_SOURCE allowed: the worker builds this for every
    # list, and the learner's popular items run to several hundred.
    best = islice(((i, p) for i, p in popular.items if i not in excluded), CANDIDATES_PER_SOURCE)
    return scored_pool(Source.POPULAR, best, POPULAR_NOW)


class Request(NamedTuple):
    """One request as read: the user, the time, their view, every source's pool and the
    popular items."""

    user_id: str
    now: float
    view: UserView
    pools: dict[Source, Pool]
    popular: PopularView


#: FBT context as the worker's (streams.sources.fbt.RedisFBT): the latest basket's last items,
#: while it is at most a day old.
FBT_CONTEXT_S = 86_400.0
FBT_ANTECEDENTS = 10
FBT_PAIRS_PER_ITEM = 50


def fbt_candidates(tracker: BasketTracker, user_id: str, k: int, now: float) -> list[Candidate]:
    """Items that complete the user's current basket (:func:`models.fbt.basket_candidates`),
    each explained by the basket items behind it.

    >>> bt = BasketTracker()
    >>> for user in ("ann", "bob"):
    ...     _ = bt.add(user, "phone", 0.0); _ = bt.add(user, "case", 1.0)
    >>> _ = bt.add("cy", "novel", 0.0); _ = bt.add("dee", "phone", 5.0)
    >>> [(c.item_id, c.reasons[0].item_id) for c in fbt_candidates(bt, "dee", 5, now=6.0)]
    [('case', 'phone')]
    """
    baskets = tracker.users.get(user_id)
    if not baskets or now - baskets[-1].last_ts > FBT_CONTEXT_S:
        return []
    basket = baskets[-1].items[-FBT_ANTECEDENTS:]
    rules = {a: tracker.rules_for(a, FBT_PAIRS_PER_ITEM, min_count=2) for a in basket}
    return [
        Candidate(c.item_id, c.score, tuple(Reason(a, v) for a, v in c.because))
        for c in basket_candidates(basket, rules, k)
    ]


class SourcePools(Protocol):
    """Where a :class:`HybridRecommender` gets the pools of its extra sources: learnt here
    (:class:`HybridSources`), or computed ahead by another process that replays the same
    events (``streams.tools.eval_sources``)."""

    def learn(self, event: Event) -> None: ...

    def pools(self, user_id: str, excluded: AbstractSet[str], now: float) -> dict[Source, Pool]:
        """The sources' candidates for the user, as pools, in :data:`EXTRA_SOURCES` order."""
        ...


#: The sources beside item-CF and social proof, in the order their pools are blended.
EXTRA_SOURCES: tuple[Source, ...] = (
    Source.MF,
    Source.CONTENT,
    Source.USER_CF,
    Source.FBT,
    Source.ITEM_KNN,
)


class HybridSources:
    """MF, content, user-CF and FBT in memory: each learns every item event with its weight
    and proposes its best :data:`CANDIDATES_PER_SOURCE` for a request.

    >>> from models.events import EventType
    >>> sources = HybridSources({EventType.PURCHASE: 5.0}, fbt=BasketTracker())
    >>> bought = [("ann", "phone"), ("ann", "case"), ("bob", "phone"), ("bob", "case"),
    ...           ("cy", "novel"), ("dee", "phone")]
    >>> for n, (user, item) in enumerate(bought):
    ...     sources.learn(Event(f"e{n}", EventType.PURCHASE, user, 1e9 + n, item_id=item))
    >>> {source: list(pool) for source, pool in sources.pools("dee", {"phone"}, 1e9 + 6).items()}
    {<Source.FBT: 'fbt'>: ['case']}
    """

    def __init__(
        self,
        weights: Mapping[EventType, float],
        *,
        mf: OnlineMF | None = None,
        content: ContentModel | None = None,
        usercf: UserCF | None = None,
        fbt: BasketTracker | None = None,
        knn: ItemKNN | None = None,
    ) -> None:
        self.weights = dict(weights)
        self.mf = mf
        self.content = content
        self.usercf = usercf
        self.fbt = fbt
        self.knn = knn

    def learn(self, event: Event) -> None:
        item = event.item_id
        if item is None:
            return
        weight = float(self.weights.get(event.type, 0.0))
        if self.mf is not None:
            self.mf.learn(event.user_id, item, weight)
        if self.content is not None and item in self.content:
            self.content.update_profile(event.user_id, item, weight, event.ts)
        if self.usercf is not None:
            self.usercf.add_weight(event.user_id, item, weight, event.ts)
        if self.fbt is not None:
            self.fbt.add(event.user_id, item, event.ts, event.type)
        if self.knn is not None:
            self.knn.learn(event)

    def pools(self, user_id: str, excluded: AbstractSet[str], now: float) -> dict[Source, Pool]:
        k = CANDIDATES_PER_SOURCE
        pools: dict[Source, Pool] = {}
        if self.mf is not None:
            found = self.mf.top_k(user_id, k, excluded)
            pools[Source.MF] = scored_pool(Source.MF, found, TASTE_MATCH)
        if self.content is not None:
            found = self.content.top_k(user_id, k, excluded, now=now)
            pools[Source.CONTENT] = scored_pool(Source.CONTENT, found, PROFILE_MATCH)
        if self.usercf is not None:
            found = self.usercf.top_k(user_id, k, excluded)
            pools[Source.USER_CF] = scored_pool(Source.USER_CF, found, SIMILAR_SHOPPERS)
        if self.fbt is not None:
            basket = fbt_candidates(self.fbt, user_id, k, now)
            pools[Source.FBT] = source_pool(
                Source.FBT, (c for c in basket if c.item_id not in excluded)
            )
        if self.knn is not None:
            found = self.knn.top_k(user_id, k, excluded, now)
            pools[Source.ITEM_KNN] = scored_pool(Source.ITEM_KNN, found, CO_OCCURRING)
        return {source: pool for source, pool in pools.items() if pool}


def source_requests(
    events: Iterable[Event],
    sources: SourcePools,
    exclude_items: AbstractSet[str] = frozenset(),
    *,
    is_test: Callable[[int, Event], bool] | None = None,
    learn_test: bool = True,
    on_request: Callable[[Event, AbstractSet[str]], None] | None = None,
    on_learn: Callable[[Event], None] | None = None,
) -> Iterator[tuple[str, float, int, dict[Source, Pool]]]:
    """Replay ``events`` through ``sources`` with the protocol of
    :func:`models.evaluation.replay`, yielding each request's ``(user, time, hash of the
    excluded set, pools)`` before the event is learnt. The replay excludes every item the user
    touched, which covers everything the user's state excludes (bought, hidden, seen), so the
    excluded set is the touched items and ``exclude_items``. ``on_request(event, touched)`` is
    called at each request after its pools (before anything learns the event), ``on_learn``
    with each event the sources learn: to ask other models the same requests alongside
    (:class:`models.evaluation.AnswersAhead`).

    >>> from models.events import EventType
    >>> evs = [Event(f"e{n}", EventType.PURCHASE, u, 1e9 + n, item_id=i) for n, (u, i)
    ...        in enumerate([("a", "phone"), ("a", "case"), ("b", "phone"), ("b", "case")])]
    >>> [(user, sorted(p)) for user, _, _, p in source_requests(evs, HybridSources(
    ...     {EventType.PURCHASE: 5.0}, usercf=UserCF()))]
    [('a', []), ('b', [<Source.USER_CF: 'user_cf'>])]
    """
    requests = RequestSelector()
    for position, event in enumerate(events):
        test = is_test is None or is_test(position, event)
        if test and requests.is_request(event):
            excluded = frozenset(requests.touched_by(event.user_id)) | exclude_items
            pools = sources.pools(event.user_id, excluded, event.ts)
            if on_request is not None:
                on_request(event, requests.touched_by(event.user_id))
            yield event.user_id, event.ts, hash(excluded), pools
        if not test or learn_test:
            sources.learn(event)
            if on_learn is not None:
                on_learn(event)
        requests.advance(event)
