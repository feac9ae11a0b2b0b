"""What a replay reports: the evaluation's parameters, each model's figures (overall, by
source, by group) and the traces the plots are drawn from.
"""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from models.evaluation.metrics import (
    coverage,
    gini,
    long_tail_share,
    ndcg_gain,
    pooled_auc,
    rank_of,
    request_auc,
)
from models.evaluation.recommenders import Scored


@dataclass(frozen=True, slots=True)
class EvalParams:
    """How the replay evaluates. ``negatives`` are sampled per request for the AUC."""

    k: int = 10
    negatives: int = 20
    seed: int = 0
    head_share: float = 0.2  # the short head: the most popular 20% of items


@dataclass(frozen=True, slots=True)
class SourceMetrics:
    """The part of a model's figures due to hits from one source, and its share of slots."""

    hr: float
    ndcg: float
    mrr: float
    hits: int
    slots: int
    slot_share: float


@dataclass(frozen=True, slots=True)
class ModelReport:
    """Figures of one model over one replay. ``auc`` is None when no request had negatives."""

    name: str
    evaluated: int
    hits: int
    hr: float
    ndcg: float
    mrr: float
    auc: float | None
    auc_warm: float | None
    auc_pooled: float | None
    coverage: float
    gini: float
    long_tail: float
    per_source: Mapping[str, SourceMetrics]

    def as_dict(self, k: int) -> dict[str, object]:
        """The JSON shape: ``hr@k``, ``ndcg@k``, ``mrr``, ``auc``, ... and ``per_source``."""
        return {
            "evaluated": self.evaluated,
            "hits": self.hits,
            f"hr@{k}": self.hr,
            f"ndcg@{k}": self.ndcg,
            "mrr": self.mrr,
            "auc": self.auc,
            "auc_warm": self.auc_warm,
            "auc_pooled": self.auc_pooled,
            "coverage": self.coverage,
            "gini": self.gini,
            "long_tail": self.long_tail,
            "per_source": {
                source: {
                    f"hr@{k}": m.hr,
                    f"ndcg@{k}": m.ndcg,
                    "mrr": m.mrr,
                    "hits": m.hits,
                    "slots": m.slots,
                    "slot_share": m.slot_share,
                }
                for source, m in sorted(self.per_source.items())
            },
        }


@dataclass
class Trace:
    """Per-request detail kept for plots: where each request was and what it scored."""

    positions: array[int] = field(default_factory=lambda: array("q"))  # event index
    hits: bytearray = field(default_factory=bytearray)
    positive_scores: array[float] = field(default_factory=lambda: array("d"))
    negative_scores: array[float] = field(default_factory=lambda: array("d"))


@dataclass
class Tally:
    """Running sums for one model during a replay."""

    evaluated: int = 0
    hits: int = 0
    ndcg: float = 0.0
    rr: float = 0.0
    auc_sum: float = 0.0
    auc_requests: int = 0
    warm_auc_sum: float = 0.0
    warm_auc_requests: int = 0
    source_hits: Counter[str] = field(default_factory=Counter)
    source_ndcg: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    source_rr: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    source_slots: Counter[str] = field(default_factory=Counter)
    exposure: Counter[str] = field(default_factory=Counter)
    trace: Trace = field(default_factory=Trace)

    def record(self, position: int, target: str, recs: Sequence[Scored]) -> None:
        self.evaluated += 1
        for rec in recs:
            self.exposure[rec.item_id] += 1
            self.source_slots[rec.source] += 1
        rank = rank_of(target, [r.item_id for r in recs])
        self.trace.positions.append(position)
        self.trace.hits.append(rank is not None)
        if rank is None:
            return
        source = recs[rank - 1].source
        gain, rr = ndcg_gain(rank), 1.0 / rank
        self.hits += 1
        self.ndcg += gain
        self.rr += rr
        self.source_hits[source] += 1
        self.source_ndcg[source] += gain
        self.source_rr[source] += rr

    def record_scores(self, scores: Sequence[float], *, cold: bool) -> None:
        positive, negatives = scores[0], scores[1:]
        if not negatives:
            return
        auc = request_auc(positive, negatives)
        self.auc_sum += auc
        self.auc_requests += 1
        if not cold:
            self.warm_auc_sum += auc
            self.warm_auc_requests += 1
        self.trace.positive_scores.append(positive)
        self.trace.negative_scores.extend(negatives)

    def report(
        self, name: str, catalog_size: int, head: AbstractSet[str], sources: Iterable[str]
    ) -> ModelReport:
        n = self.evaluated
        slots = sum(self.source_slots.values())
        per_source = {
            source: SourceMetrics(
                hr=self.source_hits[source] / n if n else 0.0,
                ndcg=self.source_ndcg.get(source, 0.0) / n if n else 0.0,
                mrr=self.source_rr.get(source, 0.0) / n if n else 0.0,
                hits=self.source_hits[source],
                slots=self.source_slots[source],
                slot_share=self.source_slots[source] / slots if slots else 0.0,
            )
            for source in sorted({*sources, *self.source_slots})
        }
        trace = self.trace
        pooled = (
            pooled_auc(trace.positive_scores, trace.negative_scores)
            if len(trace.positive_scores) and len(trace.negative_scores)
            else None
        )
        return ModelReport(
            name=name,
            evaluated=n,
            hits=self.hits,
            hr=self.hits / n if n else 0.0,
            ndcg=self.ndcg / n if n else 0.0,
            mrr=self.rr / n if n else 0.0,
            auc=self.auc_sum / self.auc_requests if self.auc_requests else None,
            auc_warm=(
                self.warm_auc_sum / self.warm_auc_requests if self.warm_auc_requests else None
            ),
            auc_pooled=pooled,
            coverage=coverage(self.exposure.keys(), catalog_size),
            gini=gini(self.exposure.values(), catalog_size),
            long_tail=long_tail_share(self.exposure, head),
            per_source=per_source,
        )


@dataclass(frozen=True, slots=True)
class GroupReport:
    """The figures of the requests of one group (e.g. the users of one fold)."""

    evaluated: int
    cold_targets: int
    models: Mapping[str, ModelReport]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """The result of one replay: figures per model (in the order given) and their traces,
    and per group when the replay was given ``group_of``."""

    events: int
    evaluated: int
    cold_targets: int
    catalog_size: int
    models: Mapping[str, ModelReport]
    traces: Mapping[str, Trace]
    groups: Mapping[int, GroupReport] = field(default_factory=dict)
