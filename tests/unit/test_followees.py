"""The followees source: followees' latest items, weighted by learned trust, decayed."""

from __future__ import annotations

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
