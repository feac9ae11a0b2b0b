"""The followees source: followees' latest items, weighted by trust read off both users' latest
items, decayed; every user's state follows from their own events, in whatever order users are
learnt."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import Event, EventType
from models.followees import FolloweeItems


def _follow(user: str, followee: str, ts: float = 0.0) -> Event:
    return Event(f"f-{user}-{followee}-{ts}", EventType.FOLLOW, user, ts, target_user_id=followee)


def _view(user: str, item: str, ts: float) -> Event:
    return Event(f"v-{user}-{item}-{ts}", EventType.VIEW, user, ts, item_id=item)


def test_an_unfollowed_or_erased_followee_no_longer_counts() -> None:
    model = FolloweeItems()
    for event in [
        _follow("ann", "bob"),
        _follow("ann", "cy"),
        _view("bob", "lamp", 1.0),
        _view("cy", "sofa", 1.0),
    ]:
        model.learn(event)
    assert {i for i, _ in model.top_k("ann", 5, set(), now=2.0, half_life_s=10.0)} == {
        "lamp",
        "sofa",
    }
    model.learn(Event("u1", EventType.UNFOLLOW, "ann", 3.0, target_user_id="bob"))
    assert [i for i, _ in model.top_k("ann", 5, set(), now=3.0, half_life_s=10.0)] == ["sofa"]
    model.forget_user("cy")
    assert model.top_k("ann", 5, set(), now=3.0, half_life_s=10.0) == []


def test_only_each_followees_latest_items_are_read_and_older_ones_decay() -> None:
    model = FolloweeItems(items_per_user=2)
    model.learn(_follow("ann", "bob"))
    for n, item in enumerate(["a", "b", "c"]):
        model.learn(_view("bob", item, float(n)))
    ranked = model.top_k("ann", 5, set(), now=2.0, half_life_s=1.0)
    assert [i for i, _ in ranked] == ["c", "b"]  # "a" fell out of bob's window
    assert ranked[0][1] == 1.0
    assert ranked[1][1] == 0.5


def test_trust_counts_the_items_both_hold_that_the_user_touched_after_the_followee() -> None:
    model = FolloweeItems()
    for event in [
        _follow("ann", "bob"),
        _view("ann", "lamp", 1.0),
        _view("bob", "lamp", 2.0),
        _view("bob", "rug", 3.0),
        _view("ann", "rug", 4.0),
        _view("ann", "rug", 5.0),
        _view("bob", "vase", 6.0),
    ]:
        model.learn(event)
    # lamp: bob touched it last; rug: ann after bob (a repeat counts once); vase: bob only.
    assert model.trust("ann", "bob") == 2.0
    assert model.trust("bob", "ann") == 2.0  # lamp, read off the items whoever follows whom
    scores = dict(model.top_k("ann", 5, set(), now=6.0, half_life_s=10.0))
    assert scores["vase"] == 2.0  # bob's items count twice for ann


def test_trust_goes_when_an_item_leaves_either_window() -> None:
    model = FolloweeItems(items_per_user=2)
    for event in [_follow("ann", "bob"), _view("bob", "lamp", 1.0), _view("ann", "lamp", 2.0)]:
        model.learn(event)
    assert model.trust("ann", "bob") == 2.0
    model.learn(_view("bob", "rug", 3.0))
    model.learn(_view("bob", "vase", 4.0))  # lamp leaves bob's window
    assert model.trust("ann", "bob") == 1.0
    model.learn(_view("bob", "lamp", 5.0))  # back in bob's, but bob touched it last
    assert model.trust("ann", "bob") == 1.0


def test_a_bounded_graph_keeps_the_latest_follows() -> None:
    model = FolloweeItems(followees_kept=2)
    for event in [
        _follow("ann", "bob", 1.0),
        _follow("ann", "cy", 2.0),
        _follow("ann", "bob", 5.0),  # a refollow makes bob the latest: cy goes next
        _follow("ann", "dee", 6.0),
    ]:
        model.learn(event)
    assert model.following["ann"] == {"bob": 5.0, "dee": 6.0}
    model.learn(_follow("ann", "eve", 7.0))
    assert model.following["ann"] == {"dee": 6.0, "eve": 7.0}


# Each step: (user, verb, object); verbs follow/unfollow name a user, view/hide an item.
_USERS = ["ann", "bob", "cy", "dee"]
_steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(_USERS), st.sampled_from(["follow", "unfollow"]),
                  st.sampled_from(_USERS)),
        st.tuples(st.sampled_from(_USERS), st.sampled_from(["view", "view", "hide"]),
                  st.sampled_from(["a", "b", "c", "d", "e"])),
    ),
    max_size=60,
)  # fmt: skip


def _events(steps: list[tuple[str, str, str]]) -> list[Event]:
    kinds = {"follow": EventType.FOLLOW, "unfollow": EventType.UNFOLLOW}
    out = []
    for n, (user, verb, obj) in enumerate(steps):
        if verb in kinds:
            out.append(Event(f"e{n}", kinds[verb], user, float(n), target_user_id=obj))
        else:
            out.append(Event(f"e{n}", EventType(verb), user, float(n), item_id=obj))
    return out


def _state(model: FolloweeItems) -> dict[str, dict[str, dict[str, float]]]:
    return {
        table: {u: v for u, v in getattr(model, table).items() if v}
        for table in ("following", "latest")
    }


@settings(max_examples=150, deadline=None)
@given(_steps, st.lists(st.integers(1, 8), min_size=1, max_size=20))
def test_batches_on_restored_users_end_where_one_model_does(
    steps: list[tuple[str, str, str]], sizes: list[int]
) -> None:
    """The worker's learner restores a batch's users (no one else: an event changes only its
    user's state) into a throwaway model and keeps what the batch left of them: the state
    must be the one model's, however the stream is cut."""
    events = _events(steps)
    whole = FolloweeItems(items_per_user=2, followees_kept=2)
    for event in events:
        whole.learn(event)
    kept = FolloweeItems(items_per_user=2, followees_kept=2)  # stands for what Redis holds
    start, n = 0, 0
    while start < len(events):
        batch = events[start : start + sizes[n % len(sizes)]]
        start, n = start + len(batch), n + 1
        users = set(dict.fromkeys(e.user_id for e in batch))
        local = FolloweeItems(items_per_user=2, followees_kept=2)
        for user in users:
            local.restore_user(
                user, following=kept.following.get(user), latest=kept.latest.get(user)
            )
        for event in batch:
            local.learn(event)
        for user in users:
            kept.following[user] = local.following.get(user, {})
            kept.latest[user] = local.latest.get(user, {})
    assert _state(kept) == _state(whole)
    for user in _USERS:
        assert kept.top_k(user, 5, set(), now=99.0, half_life_s=10.0) == whole.top_k(
            user, 5, set(), now=99.0, half_life_s=10.0
        )


@settings(max_examples=150, deadline=None)
@given(_steps, st.randoms(use_true_random=False))
def test_users_learnt_in_any_order_end_with_the_same_state_and_scores(
    steps: list[tuple[str, str, str]], rnd: random.Random
) -> None:
    """Several learners each learn their users' events in order, but how far one has got when
    another learns is anyone's guess: any interleaving that keeps each user's own order ends
    with the same state, and the same scores (trust included)."""
    events = _events(steps)
    whole = FolloweeItems(items_per_user=2)
    for event in events:
        whole.learn(event)
    queues = {u: [e for e in events if e.user_id == u] for u in _USERS}
    mixed = FolloweeItems(items_per_user=2)
    while any(queues.values()):
        user = rnd.choice([u for u, q in queues.items() if q])
        mixed.learn(queues[user].pop(0))
    assert _state(mixed) == _state(whole)
    for user in _USERS:
        assert mixed.top_k(user, 5, set(), now=99.0, half_life_s=10.0) == whole.top_k(
            user, 5, set(), now=99.0, half_life_s=10.0
        )
