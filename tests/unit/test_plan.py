"""Planning a step from kept facts (streams/store/plan.py): what is kept, for how long, and
when kept facts may not plan a step. The contract suite runs the plans against real Redis."""

from __future__ import annotations

from models.events import Event, EventType
from models.state import StateParams
from models.state.plan import FRESH, HELD, Facts
from models.state.seen import FLOOR, event_digest
from streams.store.plan import Kept, KeptFacts, Plan, can_plan, plan_from

PARAMS = StateParams(dedupe_window=8)  # trimmed past 9 events


def _view(n: int, user: str = "u", ts: float = 100.0) -> Event:
    return Event(f"e{n}", EventType.VIEW, user, ts + n, item_id=f"i{n % 3}")


def test_a_plan_leaves_the_windows_floor_and_size_and_the_histories_as_the_step_will() -> None:
    kept = {"u": Kept(Facts(), 0)}
    kept["u"].facts.seen.entries[FLOOR] = "50.0"
    events = [_view(0), _view(1), _view(0), Event("old", EventType.VIEW, "u", 40.0, item_id="x")]
    plan = plan_from("7", kept, events, {}, PARAMS)
    assert [v for v, _ in plan.events] == [FRESH, FRESH, HELD, HELD]  # a repeat; below the floor
    after = plan.users["u"]
    assert after.size == 2
    assert after.facts.seen.entries == {FLOOR: "50.0"}
    assert after.facts.affinity == {"i0": 1.0, "i1": 1.0}


def test_kept_facts_plan_only_steps_that_cannot_trim_the_window() -> None:
    kept = {"u": Kept(Facts(), 7)}
    assert can_plan(kept, [_view(0), _view(1)], PARAMS)  # 7 + 2 <= 9
    assert not can_plan(kept, [_view(0), _view(1), _view(2)], PARAMS)
    assert not can_plan(kept, [_view(0, user="v")], PARAMS)  # not kept


def test_a_written_step_gives_its_facts_back_at_the_next_version_and_the_oldest_go() -> None:
    facts = KeptFacts(partitions=2, users=4)  # two users a partition
    plan = Plan("7", [], {"a": Kept(Facts(), 1), "b": Kept(Facts(), 1)})
    facts.stepped(0, plan)
    taken = facts.take(0)
    assert taken is not None
    assert taken[0] == "8"
    assert list(taken[1]) == ["a", "b"]
    assert facts.take(0) is None, "a plan takes them: a failed step leaves none behind"
    facts.stepped(0, Plan("8", [], {"c": Kept(Facts(), 1)}, others=taken[1]))
    taken = facts.take(0)
    assert taken is not None
    assert taken[0] == "9"
    assert list(taken[1]) == ["b", "c"]


def test_an_erasure_drops_what_was_kept_of_its_partition() -> None:
    facts = KeptFacts(partitions=1)
    facts.stepped(0, Plan("1", [], {"a": Kept(Facts(), 1)}))
    facts.drop(0)
    assert facts.take(0) is None


def test_the_digest_is_the_windows_field() -> None:
    kept = {"u": Kept(Facts(), 0)}
    kept["u"].facts.seen.entries[event_digest("e0")] = "100.0"  # read from the window
    assert plan_from("1", kept, [_view(0)], {}, PARAMS).events == [(HELD, "")]
