"""The test-then-train replay, the requests it asks, answers asked ahead in another process,
and the offline splits (temporal cut, K folds by user).
"""

from __future__ import annotations

import math
import random
import statistics
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from collections.abc import Set as AbstractSet
from typing import Final

from models.evaluation.metrics import short_head
from models.evaluation.recommenders import Recommender
from models.evaluation.reports import EvalParams, GroupReport, ModelReport, ReplayReport, Tally
from models.events import ITEM_TYPES, Event, EventType

#: Item events that can be a test case. A ``hide`` is a negative answer, never a hit to find.
TARGET_TYPES: Final = ITEM_TYPES - {EventType.HIDE}

#: Every replay's sources, so a model that never used one still reports it (as zeros).
KNOWN_SOURCES: Final = ("item_cf", "popular")


class RequestSelector:
    """Which events of a replay are requests: a fresh interaction (an item event, not
    ``hide``, on an item its user has not touched) by a user with an earlier event; and what
    each user has touched so far (what a request excludes).

    >>> sel = RequestSelector()
    >>> first, again = (Event(f"e{n}", EventType.VIEW, "u1", 1e9 + n, item_id=i)
    ...                 for n, i in enumerate(["a", "b"]))
    >>> sel.is_request(first); sel.advance(first); sel.is_request(again)
    False
    True
    >>> sel.touched_by("u1")
    {'a'}
    """

    def __init__(self) -> None:
        self._touched: dict[str, set[str]] = {}
        self._active: set[str] = set()  # users with at least one event so far

    def is_request(self, event: Event) -> bool:
        item = event.item_id
        return (
            item is not None
            and event.type in TARGET_TYPES
            and event.user_id in self._active
            and item not in self._touched.get(event.user_id, ())
        )

    def touched_by(self, user_id: str) -> set[str]:
        """The items the user touched so far (the live set: it grows as the replay goes on)."""
        return self._touched.get(user_id, set())

    def advance(self, event: Event) -> None:
        """Record the event (every event, learnt or not: the record of who touched what always
        advances)."""
        self._active.add(event.user_id)
        if event.item_id is not None and event.type in ITEM_TYPES:
            self._touched.setdefault(event.user_id, set()).add(event.item_id)


def replay(
    events: Sequence[Event],
    models: Sequence[Recommender],
    params: EvalParams | None = None,
    *,
    is_test: Callable[[int, Event], bool] | None = None,
    learn_test: bool = True,
    group_of: Callable[[Event], int] | None = None,
    catalog: Collection[str] = (),
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 2000,
) -> ReplayReport:
    """Replay ``events`` (time-ordered) test-then-train through every model.

    An event at index ``n`` is a test case when ``is_test(n, event)`` (default: all events)
    and it is a fresh interaction: a non-``hide`` item event on an item its user has not
    touched, by a user with an earlier event. Each model is asked for the top ``k`` excluding
    the user's touched items, and for :meth:`Recommender.candidate_scores` of the held-out item
    followed by ``negatives`` items sampled uniformly (the same for every model) from the
    catalogue, leaving out the items the user has touched and the held-out item. Then every
    model learns the event, except test events when ``learn_test`` is False (a frozen model);
    the replay's own record of who touched what always advances. ``cold_targets`` counts the
    requests whose held-out item had no earlier event at all: no model that learns only from
    events can find those, which bounds what any of them can score; ``auc_warm`` is the AUC
    over the other requests.

    Coverage and Gini are over the catalogue = ``catalog`` ∪ items in ``events``; the short
    head is the most-interacted ``head_share`` of that catalogue over the whole stream.

    With ``group_of``, each request is also tallied in its event's group, and the report has
    the figures of every group. K-fold validation by user uses this (see :func:`fold_of`):
    when every fold replays the whole stream test-then-train, every model learns every event
    in every fold, so the K replays are one and the same and only *which requests are scored*
    differs. One replay, grouped by the user's fold, gives exactly the K folds' figures for a
    K-th of the cost.

    >>> evs = [Event(f"e{n}", EventType.VIEW, u, 1e9 + n, item_id=i)
    ...        for n, (u, i) in enumerate([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")])]
    >>> from models.evaluation.recommenders import ItemCFRecommender, PopularityRecommender
    >>> from models.state import StateParams
    >>> report = replay(evs, [ItemCFRecommender(StateParams()), PopularityRecommender()])
    >>> cf = report.models["itemcf"]
    >>> report.evaluated, cf.hr, cf.per_source["item_cf"].hits, cf.per_source["popular"].hits
    (2, 0.5, 1, 0)
    """
    params = params or EvalParams()
    run = _ReplayRun(events, models, params, catalog, group_of)
    for position, event in enumerate(events):
        test = is_test is None or is_test(position, event)
        if test and event.item_id is not None and run.requests.is_request(event):
            run.ask(position, event)
        if not test or learn_test:
            for model in models:
                model.learn(event)
        run.advance(event)
        if on_progress is not None and (position + 1) % progress_every == 0:
            on_progress(position + 1)
    if on_progress is not None:
        on_progress(len(events))
    return run.report(len(events))


class _ReplayRun:
    """What one :func:`replay` keeps as it goes: the models' tallies (overall and by group),
    who touched what, how often each item was touched, the requests asked and how many of them
    were cold."""

    def __init__(
        self,
        events: Sequence[Event],
        models: Sequence[Recommender],
        params: EvalParams,
        catalog: Collection[str],
        group_of: Callable[[Event], int] | None,
    ) -> None:
        self.models = models
        self.params = params
        self.group_of = group_of
        self.rng = random.Random(params.seed)
        self.tallies = [Tally() for _ in models]
        self.group_tallies: dict[int, tuple[list[Tally], list[int]]] = {}  # -> tallies, [n, cold]
        self.requests = RequestSelector()
        self.catalogue = catalogue_of(events, catalog)
        self.interactions: Counter[str] = Counter()
        self.evaluated = self.cold = 0

    def ask(self, position: int, event: Event) -> None:
        """Ask every model the request ``event`` and tally the answers."""
        item = event.item_id
        assert item is not None
        self.evaluated += 1
        is_cold = item not in self.interactions
        self.cold += is_cold
        exclude = self.requests.touched_by(event.user_id)
        negatives = _sample_negatives(
            self.rng, self.catalogue, exclude, item, self.params.negatives
        )
        targets = [self.tallies]
        if self.group_of is not None:
            group = self.group_of(event)
            targets.append(_group_tallies(self.group_tallies, group, len(self.models), is_cold))
        _ask(self.models, event, position, exclude, negatives, targets, self.params.k, is_cold)

    def advance(self, event: Event) -> None:
        """The replay's own record of who touched what, after every model learnt ``event``."""
        self.requests.advance(event)
        if event.item_id is not None and event.type in ITEM_TYPES:
            self.interactions[event.item_id] += 1

    def report(self, event_count: int) -> ReplayReport:
        """The figures of the replay of ``event_count`` events (coverage over the catalogue)."""
        universe = set(self.catalogue)
        touches = {i: self.interactions.get(i, 0) for i in universe}
        head = short_head(touches, self.params.head_share)
        models = self.models
        traces = {
            model.name: tally.trace for model, tally in zip(models, self.tallies, strict=True)
        }
        groups = {
            g: GroupReport(counts[0], counts[1], _reports(models, group, len(universe), head))
            for g, (group, counts) in sorted(self.group_tallies.items())
        }
        return ReplayReport(
            event_count,
            self.evaluated,
            self.cold,
            len(universe),
            _reports(models, self.tallies, len(universe), head),
            traces,
            groups,
        )


def _reports(
    models: Sequence[Recommender], tallies: Sequence[Tally], catalog_size: int, head: frozenset[str]
) -> dict[str, ModelReport]:
    """Each model's figures from its tally, by name."""
    return {
        model.name: tally.report(model.name, catalog_size, head, KNOWN_SOURCES)
        for model, tally in zip(models, tallies, strict=True)
    }


def _group_tallies(
    groups: dict[int, tuple[list[Tally], list[int]]], group: int, size: int, is_cold: bool
) -> list[Tally]:
    """The group's tallies (made at its first request), with this request counted in it."""
    tallies, counts = groups.setdefault(group, ([Tally() for _ in range(size)], [0, 0]))
    counts[0] += 1
    counts[1] += is_cold
    return tallies


def _ask(
    models: Sequence[Recommender],
    event: Event,
    position: int,
    exclude: AbstractSet[str],
    negatives: Sequence[str],
    targets: Sequence[Sequence[Tally]],
    k: int,
    is_cold: bool,
) -> None:
    """Ask every model the request ``event`` (its top ``k``, and its scores of the held-out
    item and the negatives) and record the answers in every tally of ``targets``."""
    user, item = event.user_id, event.item_id
    assert item is not None
    for m, model in enumerate(models):
        recs = model.recommend(user, k, exclude, event.ts)
        scores = model.candidate_scores(user, [item, *negatives], event.ts) if negatives else []
        for target in targets:
            target[m].record(position, item, recs)
            if negatives:
                target[m].record_scores(scores, cold=is_cold)


def catalogue_of(events: Sequence[Event], catalog: Collection[str] = ()) -> list[str]:
    """The replay's catalogue, sorted: every item of the stream (even those that appear later:
    they exist, and a cold item must be able to lose to them) plus the given catalogue."""
    universe = {e.item_id for e in events if e.item_id is not None and e.type in ITEM_TYPES}
    universe.update(catalog)
    return sorted(universe)


#: A model's answers to one request, asked ahead: its list (as plain tuples), its scores of the
#: held-out item and the negatives, and a hash of those items (which the replay checks).
Answer = tuple[list[tuple[str, float, str]], list[float], int]


class AnswersAhead:
    """Ask some models the replay's questions ahead of the replay, in another process: the
    same requests in the same order, the same negatives (the same draws of the same seeded
    generator over the same catalogue), so the answers are exactly those :func:`replay` would
    get from the models itself. The replay then reads them back (``streams.tools.eval_sources``).

    ``answer(event, touched)`` at each request, before anything learns the event; ``learn`` at
    each event the models learn. A model in ``learnt_elsewhere`` (one the caller already
    teaches, such as an item-kNN shared with a source) is asked, never taught here.

    >>> evs = [Event(f"e{n}", EventType.VIEW, u, 1e9 + n, item_id=i)
    ...        for n, (u, i) in enumerate([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")])]
    >>> from models.evaluation.recommenders import PopularityRecommender
    >>> ahead = AnswersAhead([PopularityRecommender()], evs, EvalParams(negatives=1))
    >>> for event in evs[:2]:
    ...     ahead.learn(event)
    >>> [([r[0] for r in recs], len(scores)) for recs, scores, _ in ahead.answer(evs[2], {"a"})]
    [(['b'], 2)]
    """

    def __init__(
        self,
        models: Sequence[Recommender],
        events: Sequence[Event],
        params: EvalParams,
        catalog: Collection[str] = (),
        *,
        learnt_elsewhere: Collection[Recommender] = (),
    ) -> None:
        self.models = list(models)
        self.params = params
        self._rng = random.Random(params.seed)
        self._catalogue = catalogue_of(events, catalog)
        self._taught = [m for m in self.models if not any(m is o for o in learnt_elsewhere)]

    def answer(self, event: Event, touched: AbstractSet[str]) -> list[Answer]:
        """Every model's answers to the request ``event`` (by a user who touched ``touched``),
        drawing the negatives exactly as :func:`replay` does."""
        item = event.item_id
        assert item is not None
        negatives = _sample_negatives(
            self._rng, self._catalogue, touched, item, self.params.negatives
        )
        asked = [item, *negatives]
        key = hash(tuple(asked))
        answers: list[Answer] = []
        for model in self.models:
            recs = model.recommend(event.user_id, self.params.k, touched, event.ts)
            scores = model.candidate_scores(event.user_id, asked, event.ts) if negatives else []
            answers.append(([(r.item_id, r.score, r.source) for r in recs], scores, key))
        return answers

    def learn(self, event: Event) -> None:
        for model in self._taught:
            model.learn(event)

    def values(self) -> dict[str, dict[str, object]]:
        """The knobs the models learnt, by name: a learned popularity's half-life."""
        found: dict[str, dict[str, object]] = {}
        for model in self.models:
            popularity = getattr(model, "popularity", None)
            if popularity is not None and hasattr(popularity, "half_life_s"):
                found[model.name] = {"half_life_s": popularity.half_life_s}
        return found


def _sample_negatives(
    rng: random.Random, items: Sequence[str], exclude: AbstractSet[str], target: str, count: int
) -> list[str]:
    """Up to ``count`` distinct items, uniformly from ``items``, not in ``exclude`` nor the
    target. Bounded attempts: a user who touched nearly everything just gets fewer."""
    chosen: dict[str, None] = {}
    if not items or count <= 0:
        return []
    # Draw in batches with random.choices (one C loop) rather than one randrange per draw.
    for _ in range(4):
        for candidate in rng.choices(items, k=count):
            if candidate != target and candidate not in exclude:
                chosen[candidate] = None
                if len(chosen) >= count:
                    return list(chosen)
    return list(chosen)


# ------------------------------------------------------------------------------------------------
# Offline splits
# ------------------------------------------------------------------------------------------------


def temporal_cut(events: Sequence[Event], train_fraction: float) -> int:
    """Index of the first test event when the first ``train_fraction`` (by time) trains.

    Events with the same timestamp as the cut stay together on the training side.

    >>> evs = [Event(f"e{n}", EventType.VIEW, "u", float(t), item_id="a")
    ...        for n, t in enumerate([1, 2, 2, 3, 4])]
    >>> temporal_cut(evs, 0.4), temporal_cut(evs, 0.0), temporal_cut(evs, 1.0)
    (3, 0, 5)
    """
    if not 0.0 <= train_fraction <= 1.0:
        raise ValueError("train_fraction must be within [0, 1]")
    cut = math.floor(len(events) * train_fraction)
    while 0 < cut < len(events) and events[cut].ts == events[cut - 1].ts:
        cut += 1
    return cut


def fold_of(user_id: str, folds: int) -> int:
    """The user's fold: a stable hash (CRC-32 of the id), so runs and machines agree.

    >>> fold_of("u1", 5) == fold_of("u1", 5), 0 <= fold_of("u1", 5) < 5
    (True, True)
    """
    return zlib.crc32(user_id.encode()) % folds


def summarise(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n − 1) of the values that are not None.

    >>> [round(x, 4) for x in summarise([0.2, 0.4, None]) if x is not None]
    [0.3, 0.1414]
    """
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return statistics.fmean(present), std
