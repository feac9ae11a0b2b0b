"""The assembly's vocabulary: the sources, what a source proposes (:class:`Candidate`, with its
:class:`Reason` list, kept per source as a :data:`Pool`), what a list is made of
(:class:`RecommendedItem`, :class:`Recommendations`), what a learned :class:`Ranker` sees,
the parameters of one list and what it never shows (:func:`excluded_items`).

>>> RecommendParams().source_weights[:2]  # the fixed blend unless a list is given one
((<Source.ITEM_CF: 'item_cf'>, 1.0), (<Source.SOCIAL: 'social'>, 1.0))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol

from models.state import UserView


class Source(StrEnum):
    ITEM_CF = "item_cf"
    SOCIAL = "social"
    MF = "mf"  # online matrix factorisation (models.mf)
    CONTENT = "content"  # catalog content: profile match and content neighbours (models.content)
    USER_CF = "user_cf"  # people who act like you (models.usercf)
    FBT = "fbt"  # frequently bought together with the user's basket (models.fbt)
    ITEM_KNN = "item_knn"  # co-occurrence cosine over every pair, no caps (models.itemknn)
    FOLLOWEES = "followees"  # followees' latest items, weighted by trust (models.followees)
    TRENDING = "trending"
    POPULAR = "popular"
    EXPLORE = "explore"  # the exploration slot: a new or long-tail item


#: Personal sources, in the order their contributions are listed; popularity last, when it is
#: blended in as a source of its own (learned blend weights, models.knobs).
PERSONAL_SOURCES: tuple[Source, ...] = (
    Source.ITEM_CF,
    Source.SOCIAL,
    Source.MF,
    Source.CONTENT,
    Source.USER_CF,
    Source.FBT,
    Source.ITEM_KNN,
    Source.FOLLOWEES,
    Source.POPULAR,
)

#: The fixed blend: what a source's best candidate for a user is worth (see :func:`blend`).
#: Chosen with ``socialrec eval`` (docs/quality.md); a learned ranker replaces it only where
#: it measures better.
DEFAULT_SOURCE_WEIGHTS: dict[Source, float] = {
    Source.ITEM_CF: 1.0,
    Source.SOCIAL: 1.0,
    Source.MF: 0.1,  # at 1.0 MF cost 37 % of HR@10; at 0.1 it still adds a little
    Source.CONTENT: 0.25,
    Source.USER_CF: 0.25,
    Source.FBT: 0.8,
}

#: What one social proof is worth before decay: a share to you persuades more than a
#: followee's purchase, which persuades more than their like.
#: "recent": any other recent item of a followee (read only when asked: ``followee_items``).
DEFAULT_SOCIAL_WEIGHTS = {"share": 1.0, "purchase": 0.8, "like": 0.5, "recent": 0.5}


@dataclass(frozen=True, slots=True)
class RecommendParams:
    top_n: int = 10
    exclude_items: frozenset[str] = frozenset()
    exclude_seen: bool = True
    reasons_per_item: int = 3
    half_life_s: float = 6 * 3600.0
    social_weights: tuple[tuple[str, float], ...] = tuple(DEFAULT_SOCIAL_WEIGHTS.items())
    social_half_life_s: float = 3 * 86400.0
    category_cap: int = 0  # at most this many items per category in a list (0: no cap)
    source_weights: tuple[tuple[Source, float], ...] = ()  # the blend (set in __post_init__)
    explore_slots: int = 0  # positions at the end of the list for new or long-tail items
    pool_size: int = 50  # candidates each source proposes (item-CF's best are kept)

    def __post_init__(self) -> None:
        if not self.source_weights:
            object.__setattr__(self, "source_weights", tuple(DEFAULT_SOURCE_WEIGHTS.items()))


def excluded_items(view: UserView, params: RecommendParams) -> frozenset[str]:
    """Everything that must never be shown to this user right now."""
    excluded = view.bought | view.hidden | params.exclude_items
    return excluded | view.seen if params.exclude_seen else excluded


class Reason(NamedTuple):
    """What added to a score: one of the user's items (item-CF), or a person and what they did
    (social: ``user_id`` shared it with the user, or bought/liked it).

    Reasons and candidates are named tuples, not dataclasses: every list decodes about a
    hundred of each from the learner's pools, and a frozen dataclass costs several times as
    much to build."""

    item_id: str | None
    contribution: float
    user_id: str | None = None
    action: str | None = None


class Candidate(NamedTuple):
    """One item a source proposes for a user: the source's own score (higher is better, on the
    source's scale; the assembly normalises) and why."""

    item_id: str
    score: float
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class RecommendedItem:
    item_id: str
    score: float
    source: Source
    reasons: tuple[Reason, ...]
    sources: tuple[tuple[Source, float], ...] = ()  # each source's share of the score


@dataclass(frozen=True, slots=True)
class CandidateFeatures:
    """What the ranker sees of one candidate: each source's normalised score (0 if the source
    did not propose it). The same numbers drive the fixed blend and the learned ranker."""

    item_id: str
    normalised: Mapping[Source, float]
    history: int = 0  # how many recent items the user has (context for a learned ranker)


class Ranker(Protocol):
    """A learned scorer of candidates (see models.ranker); higher is better."""

    def score(self, features: Sequence[CandidateFeatures]) -> list[float]: ...


#: How many of the best candidates' features a list remembers for the ranker.
RANKER_MEMORY = 50


@dataclass(frozen=True, slots=True)
class Recommendations:
    user_id: str
    items: tuple[RecommendedItem, ...]
    cold_start: bool
    #: The best personal candidates' features, shown or not (to learn from the user's next
    #: event: see models.ranker).
    features: tuple[CandidateFeatures, ...] = ()


#: candidate -> (raw score, reasons). Item-CF's reasons stay (contribution, item) tuples until
#: the candidate is chosen: building Reason objects for every neighbour would dominate a request.
Pool = dict[str, tuple[float, Sequence[Reason | tuple[float, str]]]]
