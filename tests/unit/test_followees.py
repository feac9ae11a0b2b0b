"""The followees source: followees' latest items, weighted by learned trust, decayed."""

from __future__ import annotations

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


def test_trust_grows_only_with_items_the_user_took_after_the_followee() -> None:
    model = FolloweeItems()
    for event in [
        _follow("ann", "bob"),
        _view("ann", "lamp", 1.0),
        _view("bob", "lamp", 2.0),
        _view("bob", "rug", 3.0),
        _view("ann", "rug", 4.0),
        _view("ann", "rug", 5.0),
    ]:
        model.learn(event)
    # lamp: ann first; rug: bob first, then ann (a repeat counts once).
    assert model.trust("ann", "bob") == 2.0
    assert model.trust("bob", "ann") == 1.0


def test_trust_goes_with_its_edge() -> None:
    model = FolloweeItems()
    for event in [_follow("ann", "bob"), _view("bob", "lamp", 1.0), _view("ann", "lamp", 2.0)]:
        model.learn(event)
    assert model.trust("ann", "bob") == 2.0
    model.learn(Event("u1", EventType.UNFOLLOW, "ann", 3.0, target_user_id="bob"))
    model.learn(_follow("ann", "bob", 4.0))
    assert model.trust("ann", "bob") == 1.0  # a refollow starts again


def test_a_bounded_graph_keeps_the_latest_follows_and_their_trust_only() -> None:
    model = FolloweeItems(followees_kept=2)
    for event in [
        _follow("ann", "bob", 1.0),
        _follow("ann", "cy", 2.0),
        _view("bob", "lamp", 3.0),
        _view("ann", "lamp", 4.0),
        _follow("ann", "bob", 5.0),  # a refollow makes bob the latest: cy goes next
        _follow("ann", "dee", 6.0),
    ]:
        model.learn(event)
    assert model.following["ann"] == {"bob": 5.0, "dee": 6.0}
    assert model.hits["ann"] == {"bob": 1}
    model.learn(_follow("ann", "eve", 7.0))
    assert model.following["ann"] == {"dee": 6.0, "eve": 7.0}
    assert model.hits["ann"] == {}  # bob's trust left with bob


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


@settings(max_examples=150, deadline=None)
@given(_steps, st.lists(st.integers(1, 8), min_size=1, max_size=20))
def test_batches_on_restored_users_end_where_one_model_does(
    steps: list[tuple[str, str, str]], sizes: list[int]
) -> None:
    """The worker's learner restores a batch's users and their followees' items into a
    throwaway model and keeps what the batch left of its users: the state must be the one
    model's, however the stream is cut."""
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
        followees = {f for u in users for f in kept.following.get(u, {})}
        followees |= {e.target_user_id for e in batch if e.target_user_id}
        for user in followees | users:
            local.restore_user(
                user,
                following=kept.following.get(user),
                latest=kept.latest.get(user),
                hits=kept.hits.get(user),
            )
        for event in batch:
            local.learn(event)
        for user in users:
            kept.following[user] = local.following.get(user, {})
            kept.latest[user] = local.latest.get(user, {})
            kept.hits[user] = local.hits.get(user, {})
    for table in ("following", "latest", "hits"):
        got = {u: v for u, v in getattr(kept, table).items() if v}
        assert got == {u: v for u, v in getattr(whole, table).items() if v}, table
    for user in _USERS:
        assert kept.top_k(user, 5, set(), now=99.0, half_life_s=10.0) == whole.top_k(
            user, 5, set(), now=99.0, half_life_s=10.0
        )
