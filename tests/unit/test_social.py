"""Social signals (models/social.py): shares, followees' actions, bounds and erasure."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import Event, EventType
from models.social import Proof, SocialGraph, describe
from tests.unit.strategies import strings_in

T0 = 1_700_000_000.0
USERS = [f"user{k}" for k in range(6)]
ITEMS = [f"sku{k}" for k in range(8)]
KINDS = [
    EventType.FOLLOW,
    EventType.UNFOLLOW,
    EventType.SHARE,
    EventType.PURCHASE,
    EventType.LIKE,
    EventType.CART,
    EventType.VIEW,
]


@st.composite
def streams(draw: st.DrawFn, max_size: int = 60) -> list[tuple[Event, bool]]:
    """(event, run expire after it) pairs; follows, shares and actions among a few users."""
    count = draw(st.integers(min_value=0, max_value=max_size))
    ts = T0
    steps = []
    for n in range(count):
        ts += draw(st.sampled_from([1.0, 600.0, 20_000.0, 200_000.0]))
        at = ts - draw(st.sampled_from([0.0, 0.0, 500.0]))  # some late arrivals
        user = draw(st.sampled_from(USERS))
        kind = draw(st.sampled_from(KINDS))
        target = draw(st.sampled_from([u for u in USERS if u != user]))
        if kind in (EventType.FOLLOW, EventType.UNFOLLOW):
            event = Event(f"e{n}", kind, user, at, target_user_id=target)
        else:
            item = draw(st.sampled_from(ITEMS))
            to = target if kind is EventType.SHARE else None
            event = Event(f"e{n}", kind, user, at, item_id=item, target_user_id=to)
        steps.append((event, draw(st.integers(0, 9)) == 0))
    return steps


def _small() -> SocialGraph:
    return SocialGraph(
        half_life_s=50_000,
        max_age_s=400_000,
        max_following=3,
        actions_per_user=3,
        shares_per_user=3,
        proofs_per_item=2,
    )


def _replay(steps: list[tuple[Event, bool]]) -> SocialGraph:
    graph = _small()
    for event, expire in steps:
        graph.apply_event(event)
        if expire:
            graph.expire(event.ts)
    return graph


def _check_invariants(g: SocialGraph) -> None:
    edges = {(u, v, ts) for u, row in g.following.items() for v, ts in row.items()}
    assert edges == {(u, v, ts) for v, row in g.followers.items() for u, ts in row.items()}
    assert all(0 < len(row) <= g.max_following for row in g.following.values())
    assert all(row for row in g.followers.values())
    for user, actions in g.actions.items():
        assert 0 < len(actions) <= g.actions_per_user
        assert [a.ts for a in actions] == sorted(a.ts for a in actions)
        assert len({(a.item_id, a.action) for a in actions}) == len(actions)
        assert all(a.action in g.action_weights for a in actions), user
    sent: dict[str, dict[str, int]] = {}
    for recipient, shares in g.inbox.items():
        assert 0 < len(shares) <= g.shares_per_user
        assert [s.ts for s in shares] == sorted(s.ts for s in shares)
        assert len({(s.sharer, s.item_id) for s in shares}) == len(shares)
        for share in shares:
            assert share.sharer != recipient
            row = sent.setdefault(share.sharer, {})
            row[recipient] = row.get(recipient, 0) + 1
    assert g.outbox == sent  # erasure can find every share a user sent


@settings(max_examples=40, deadline=None)
@given(streams())
def test_state_stays_consistent_and_bounded(steps: list[tuple[Event, bool]]) -> None:
    graph = _small()
    for event, expire in steps:
        graph.apply_event(event)
        if expire:
            graph.expire(event.ts)
        _check_invariants(graph)


@settings(max_examples=40, deadline=None)
@given(streams(), st.sets(st.sampled_from(ITEMS), max_size=3))
def test_candidates_are_finite_ranked_explained_and_deterministic(
    steps: list[tuple[Event, bool]], exclude: set[str]
) -> None:
    graph, again = _replay(steps), _replay(steps)
    assert graph.snapshot() == again.snapshot()
    now = max((e.ts for e, _ in steps), default=T0)
    for user in USERS:
        found = graph.candidates(user, k=5, exclude=exclude, now=now)
        assert found == again.candidates(user, k=5, exclude=exclude, now=now)
        scores = [c.score for c in found]
        assert scores == sorted(scores, reverse=True)
        followees = set(graph.following.get(user, {}))
        sharers = {s.sharer for s in graph.inbox.get(user, [])}
        for c in found:
            assert c.item_id not in exclude
            assert math.isfinite(c.score)
            assert c.score > 0.0
            assert 0 < len(c.proof) <= graph.proofs_per_item
            for proof in c.proof:
                if proof.action is EventType.SHARE:
                    assert proof.user_id in sharers
                else:
                    assert proof.user_id in followees
            assert describe(c)


@settings(max_examples=40, deadline=None)
@given(streams(), st.sampled_from(USERS))
def test_forget_user_leaves_no_trace(steps: list[tuple[Event, bool]], user: str) -> None:
    graph = _replay(steps)
    graph.forget_user(user)
    assert user not in strings_in(graph.snapshot())
    _check_invariants(graph)
    now = max((e.ts for e, _ in steps), default=T0)
    for other in USERS:
        for c in graph.candidates(other, k=10, now=now):
            assert user not in {p.user_id for p in c.proof}


def test_a_share_reaches_the_recipient_with_the_sharer_as_proof() -> None:
    graph = SocialGraph()
    graph.apply_event(
        Event("e1", EventType.SHARE, "ann", T0, item_id="lipstick", target_user_id="bob")
    )
    (found,) = graph.candidates("bob", k=5, now=T0 + 60)
    assert found.item_id == "lipstick"
    assert found.proof == (Proof("ann", EventType.SHARE, T0),)
    assert 0.0 < found.score <= graph.share_weight
    assert describe(graph.candidates("bob", k=1, now=T0)[0]) == "shared with you by ann"
    assert graph.candidates("ann", k=5, now=T0) == []  # the sharer gets nothing from it
    assert graph.candidates("cy", k=5, now=T0) == []  # nor does anyone else
    assert graph.candidates("bob", k=5, exclude={"lipstick"}, now=T0) == []


def test_an_unfollow_removes_the_followees_actions() -> None:
    graph = SocialGraph()
    graph.apply_event(Event("e1", EventType.FOLLOW, "cy", T0, target_user_id="bob"))
    graph.apply_event(Event("e2", EventType.PURCHASE, "bob", T0 + 1, item_id="sneakers"))
    graph.apply_event(Event("e3", EventType.CART, "bob", T0 + 2, item_id="secret"))
    found = graph.candidates("cy", k=5, now=T0 + 10)
    assert [c.item_id for c in found] == ["sneakers"]  # carts are not broadcast
    assert describe(found[0]) == "bought by bob, whom you follow"
    graph.apply_event(Event("e4", EventType.UNFOLLOW, "cy", T0 + 20, target_user_id="bob"))
    assert graph.candidates("cy", k=5, now=T0 + 30) == []
    assert graph.following == {}
    assert graph.followers == {}


def test_several_followees_add_up_and_old_proof_decays() -> None:
    graph = SocialGraph(half_life_s=3600, max_age_s=86400)
    for followee in ("bob", "dee"):
        graph.follow("cy", followee, T0)
    graph.record_action("bob", "sneakers", EventType.PURCHASE, T0)
    graph.record_action("dee", "sneakers", EventType.PURCHASE, T0)
    graph.record_action("dee", "hat", EventType.PURCHASE, T0 - 3600)
    found = graph.candidates("cy", k=5, now=T0)
    assert [c.item_id for c in found] == ["sneakers", "hat"]
    assert math.isclose(found[0].score, 16.0)
    assert math.isclose(found[1].score, 4.0)  # one half-life old
    assert describe(found[0]) == "bought by bob and dee, whom you follow"
    assert graph.candidates("cy", k=5, now=T0 + 86400 + 1) == []  # too old to count
    assert graph.expire(T0 + 86400 + 1) == 3
    assert graph.actions == {}


def test_repeats_refresh_instead_of_piling_up() -> None:
    graph = SocialGraph()
    graph.record_share("ann", "bob", "lipstick", T0)
    graph.record_share("ann", "bob", "lipstick", T0 + 5)
    assert [s.ts for s in graph.inbox["bob"]] == [T0 + 5]
    assert graph.outbox == {"ann": {"bob": 1}}
    graph.record_action("bob", "hat", EventType.LIKE, T0)
    graph.record_action("bob", "hat", EventType.LIKE, T0 + 9)
    assert [a.ts for a in graph.actions["bob"]] == [T0 + 9]
    assert not graph.record_share("ann", "ann", "lipstick", T0)  # no self-shares
    graph.follow("ann", "ann", T0)  # nor self-follows
    assert graph.following == {}


def test_caps_drop_the_oldest() -> None:
    graph = SocialGraph(max_following=2, shares_per_user=2, actions_per_user=2)
    for n, followee in enumerate(["b", "c", "d"]):
        graph.follow("a", followee, T0 + n)
    assert set(graph.following["a"]) == {"c", "d"}
    assert "b" not in graph.followers
    for n, sharer in enumerate(["x", "y", "z"]):
        graph.record_share(sharer, "a", f"item{n}", T0 + n)
    assert [s.sharer for s in graph.inbox["a"]] == ["y", "z"]
    assert "x" not in graph.outbox
    assert not graph.record_share("w", "a", "late", T0 - 100)  # older than all kept: dropped
    assert [s.sharer for s in graph.inbox["a"]] == ["y", "z"]
    assert "w" not in graph.outbox
