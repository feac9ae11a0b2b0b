"""Trending windows (models/trending/): running totals, expiry, bursts, erasure by subtract."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import Event, EventType
from models.trending import (
    SettledSums,
    Tally,
    TrendingList,
    TrendingWindows,
    rank_items,
    scopes_for,
    settled_sums,
    summarise_buckets,
)
from models.trending.buckets import window_slot

T0 = 1_700_000_000.0
SCOPES = ["global", "stream:a", "stream:b", "category:shoes"]
ITEMS = [f"i{k}" for k in range(8)]


@dataclass(frozen=True)
class Op:
    kind: str  # "add" | "subtract" | "expire" | "top"
    scope: str
    item_id: str
    weight: float
    ts: float


@st.composite
def op_streams(draw: st.DrawFn, max_size: int = 50) -> list[Op]:
    """Mostly time-ordered operations with some late events, undos and clock moves."""
    count = draw(st.integers(min_value=0, max_value=max_size))
    ts = T0
    ops: list[Op] = []
    added: list[Op] = []
    for _ in range(count):
        ts += draw(st.sampled_from([0.0, 0.3, 1.0, 2.5, 7.0, 45.0, 200.0]))
        kind = draw(st.sampled_from(["add", "add", "add", "add", "subtract", "expire", "top"]))
        if kind == "subtract" and added:
            ops.append(Op("subtract", *_fields(draw(st.sampled_from(added)))))
            continue
        late = draw(st.sampled_from([0.0, 0.0, 0.0, 3.0, 70.0]))  # out-of-order arrivals
        op = Op(
            "add" if kind == "subtract" else kind,
            draw(st.sampled_from(SCOPES)),
            draw(st.sampled_from(ITEMS)),
            draw(st.sampled_from([1.0, 3.0, 4.0, 5.0, 8.0, 0.5])),
            ts - late,
        )
        ops.append(op)
        if op.kind == "add":
            added.append(op)
    return ops


def _fields(op: Op) -> tuple[str, str, float, float]:
    return op.scope, op.item_id, op.weight, op.ts


def _run(ops: list[Op], tw: TrendingWindows) -> list[object]:
    outputs: list[object] = []
    for op in ops:
        if op.kind == "add":
            outputs.append(tw.add(*_fields(op)))
        elif op.kind == "subtract":
            outputs.append(tw.subtract(*_fields(op)))
        elif op.kind == "expire":
            tw.expire(op.ts)
        else:
            outputs.append(tw.top(op.scope, 3, op.ts))
    return outputs


def _small() -> TrendingWindows:
    return TrendingWindows(windows_s=(10.0, 30.0), bucket_s=2.0, max_items_per_bucket=5)


def _check_invariants(tw: TrendingWindows) -> None:
    for scope, state in tw.scopes.items():
        assert state.buckets, f"empty scope {scope} kept"
        # Bounded memory: only buckets inside the retention, each with a bounded item count.
        assert len(state.buckets) <= tw.retention
        assert all(state.clock - tw.retention < idx <= state.clock for idx in state.buckets)
        assert set(state.newest) == set(state.buckets)
        for bucket in state.buckets.values():
            assert 0 < len(bucket) <= tw.max_items_per_bucket
            assert all(t.events > 0 and math.isfinite(t.weight) for t in bucket.values())
        # Running totals equal a recomputation from the buckets.
        for w, span in enumerate(tw.spans):
            for slot, totals in ((0, state.current[w]), (1, state.previous[w])):
                expected: dict[str, tuple[float, int]] = {}
                for idx, bucket in state.buckets.items():
                    if window_slot(idx, state.clock, span) != slot:
                        continue
                    for item, t in bucket.items():
                        weight, events = expected.get(item, (0.0, 0))
                        expected[item] = (weight + t.weight, events + t.events)
                assert set(totals) == set(expected)
                for item, (weight, events) in expected.items():
                    assert totals[item].events == events
                    assert math.isclose(totals[item].weight, weight, abs_tol=1e-9)


@settings(max_examples=30, deadline=None)
@given(op_streams())
def test_running_totals_match_buckets_and_memory_stays_bounded(ops: list[Op]) -> None:
    tw = _small()
    for op in ops:
        _run([op], tw)
        _check_invariants(tw)


@settings(max_examples=30, deadline=None)
@given(op_streams())
def test_same_operations_give_the_same_state_and_results(ops: list[Op]) -> None:
    a, b = _small(), _small()
    assert _run(ops, a) == _run(ops, b)
    assert a.snapshot() == b.snapshot()
    assert a.take_changed() == b.take_changed()


@settings(max_examples=30, deadline=None)
@given(op_streams())
def test_scores_are_finite_and_ranked(ops: list[Op]) -> None:
    tw = _small()
    _run(ops, tw)
    now = max((op.ts for op in ops), default=T0)
    for scope in SCOPES:
        for window in tw.windows_s:
            result = tw.top(scope, 5, now, window_s=window)
            counts = [i.count for i in result.items]
            assert counts == sorted(counts, reverse=True)
            for item in result.items:
                assert math.isfinite(item.count)
                assert math.isfinite(item.velocity)
                assert item.count > 0
                assert item.events > 0
                assert item.velocity <= item.count / window + 1e-9
            if result.items:
                assert result.newest_ts is not None
                assert result.newest_ts <= now


@settings(max_examples=30, deadline=None)
@given(op_streams(), st.data())
def test_subtract_undoes_adds_exactly(ops: list[Op], data: st.DataObject) -> None:
    """Adding events then subtracting some leaves the state of adding only the others."""
    adds = [op for op in ops if op.kind == "add"]
    undo = data.draw(st.sets(st.integers(0, len(adds) - 1))) if adds else set()
    # A cap nobody reaches: with full buckets, which event was refused depends on the undone.
    full, only_kept = TrendingWindows((10.0, 30.0), 2.0), TrendingWindows((10.0, 30.0), 2.0)
    for op in adds:
        full.add(*_fields(op))
    for n in sorted(undo):
        full.subtract(*_fields(adds[n]))
    for n, op in enumerate(adds):
        if n not in undo:
            only_kept.add(*_fields(op))
    # The clocks may differ (an undone event can be the newest): compare at one common time.
    # Weights are multiples of 0.5, so every sum is exact and the states compare equal.
    now = max((op.ts for op in adds), default=T0)
    full.expire(now)
    only_kept.expire(now)
    assert _without_newest(full) == _without_newest(only_kept)


def _without_newest(tw: TrendingWindows) -> dict[str, object]:
    """The snapshot minus the newest-event times (documented to overstate after an undo)."""
    snap = tw.snapshot()
    result: dict[str, object] = {}
    for scope, state in snap.items():
        assert isinstance(state, dict)
        result[scope] = {k: v for k, v in state.items() if k != "newest"}
    return result


def test_a_burst_in_one_stream_tops_that_stream_and_leaves_others_alone() -> None:
    def background(tw: TrendingWindows) -> None:
        rng = random.Random(7)
        for second in range(300):
            for stream in ("stream:a", "stream:b", "stream:c"):
                tw.add(stream, rng.choice(ITEMS), rng.choice([1.0, 3.0, 5.0]), T0 + second)

    quiet, bursty = TrendingWindows(), TrendingWindows()
    background(quiet)
    background(bursty)
    bursty.take_changed()
    for n in range(200):  # the host shows a new lipstick: 200 carts in 20 seconds
        bursty.add("stream:a", "lipstick", 5.0, T0 + 280 + n / 10)
    assert bursty.take_changed() == ["stream:a"]
    now = T0 + 300

    top_a = bursty.top("stream:a", 3, now)
    assert top_a.items[0].item_id == "lipstick"
    assert top_a.items[0].velocity > 0
    assert top_a.items[0].events == 200
    assert top_a.newest_ts == T0 + 299.9
    assert bursty.top("stream:a", 1, now, by="velocity").items[0].item_id == "lipstick"
    assert bursty.top("stream:a", 1, now, window_s=300.0).items[0].item_id == "lipstick"
    for stream in ("stream:b", "stream:c", "global"):
        assert bursty.top(stream, 10, now) == quiet.top(stream, 10, now)


def test_expiry_drops_old_buckets_then_the_scope_and_then_nothing_changes() -> None:
    tw = TrendingWindows(windows_s=(60.0,), bucket_s=1.0)
    for second in range(100):
        tw.add("stream:a", "i1", 1.0, T0 + second)
    assert len(tw.scopes["stream:a"].buckets) == 100
    tw.take_changed()
    tw.expire(T0 + 149)  # keeps the 120 buckets after T0 + 29, of which seconds 30..99 exist
    assert sorted(tw.scopes["stream:a"].buckets) == [int(T0) + s for s in range(30, 100)]
    assert tw.take_changed() == ["stream:a"]  # buckets crossed window edges: counts changed
    assert tw.top("stream:a", 1, T0 + 149).items[0].events == 10  # seconds 90..99
    tw.expire(T0 + 220)
    assert tw.scopes == {}
    assert tw.top("stream:a", 1, T0 + 220).items == ()
    assert tw.take_changed() == ["stream:a"]  # the last change: the list is now empty
    tw.expire(T0 + 500)
    assert tw.take_changed() == []


def test_quiet_time_after_the_windows_changes_nothing() -> None:
    tw = TrendingWindows(windows_s=(10.0,), bucket_s=1.0)
    tw.add("stream:a", "i1", 1.0, T0)
    tw.expire(T0 + 5)
    tw.take_changed()
    tw.expire(T0 + 9)  # still inside the current window: nothing moved
    assert tw.take_changed() == []


def test_late_events_and_full_buckets_are_refused_and_counted() -> None:
    tw = TrendingWindows(windows_s=(10.0,), bucket_s=1.0, max_items_per_bucket=2)
    assert tw.add("global", "i1", 1.0, T0 + 100)
    assert not tw.add("global", "i0", 1.0, T0 + 80)  # older than the 20 s retention
    assert tw.add("global", "i2", 1.0, T0 + 100.5)
    assert not tw.add("global", "i3", 1.0, T0 + 100.7)  # third item in a 2-item bucket
    assert tw.add("global", "i1", 1.0, T0 + 100.9)  # items already there still count
    assert tw.dropped == 1
    assert not tw.add("global", "i1", 0.0, T0 + 101)  # zero / negative weights never trend
    assert not tw.add("global", "i1", -10.0, T0 + 101)
    with pytest.raises(ValueError, match="finite"):
        tw.add("global", "i1", math.nan, T0)


def test_events_count_in_their_scopes_and_subtract_event_undoes_them() -> None:
    tw = TrendingWindows()
    ev = Event("e1", EventType.PURCHASE, "u1", T0, item_id="sku", stream_id="live-1")
    assert tw.add_event(ev, category="shoes", merchant_id="m1") == (
        "global",
        "category:shoes",
        "merchant:m1",
        "stream:live-1",
    )
    assert tw.top("merchant:m1", 1, T0).items[0].count == 8.0
    hide = Event("e2", EventType.HIDE, "u1", T0, item_id="sku")
    assert tw.add_event(hide) == ()
    assert len(tw.subtract_event(ev, category="shoes", merchant_id="m1")) == 4
    assert tw.snapshot() == {}
    assert not tw.subtract("global", "sku", 8.0, T0)  # nothing left to undo


def test_scopes_for_skips_missing_parts() -> None:
    ev = Event("e1", EventType.VIEW, "u1", T0, item_id="sku")
    assert scopes_for(ev) == ("global",)
    assert scopes_for(ev, category="shoes") == ("global", "category:shoes")


def test_state_holds_no_user_ids() -> None:
    tw = TrendingWindows()
    ev = Event("e1", EventType.LIKE, "secret-user", T0, item_id="sku", stream_id="s")
    tw.add_event(ev, category="c", merchant_id="m")
    assert "secret-user" not in repr(tw.snapshot())


@pytest.mark.parametrize(
    ("windows", "bucket"), [((), 1.0), ((10.0,), 3.0), ((10.0,), 0.0), ((0.5,), 1.0)]
)
def test_bad_window_configuration_is_refused(windows: tuple[float, ...], bucket: float) -> None:
    with pytest.raises(ValueError, match=r"window|bucket"):
        TrendingWindows(windows, bucket)


def test_unknown_window_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no 42\.0s window"):
        TrendingWindows().top("global", 1, T0, window_s=42.0)


@given(
    st.dictionaries(
        st.integers(0, 30),
        st.dictionaries(
            st.sampled_from("abcdefgh"),
            st.tuples(st.floats(-5, 5, allow_nan=False), st.integers(-2, 3)),
            max_size=6,
        ),
        max_size=30,
    ),
    st.integers(10, 30),
    st.integers(1, 8),
    st.integers(0, 10),
)
def test_settled_sums_give_the_same_list_to_the_last_bit(
    raw: dict[int, dict[str, tuple[float, int]]], clock: int, span: int, open_buckets: int
) -> None:
    """The worker sums a scope's closed buckets once per clock and adds the open ones at each
    look: the list must equal summing every bucket, float for float (as Redis hands buckets
    over: ascending, weights of any sign after an erasure)."""
    buckets = {
        idx: {item: Tally(w, n) for item, (w, n) in items.items()}
        for idx, items in sorted(raw.items())
        if clock - 2 * span < idx <= clock
    }

    def look(settled: SettledSums | None) -> TrendingList:
        return summarise_buckets(
            "global", buckets, {}, now=clock + 0.5, window_s=float(span), bucket_s=1.0, k=8,
            settled=settled,
        )  # fmt: skip

    plain = look(None)
    kept = settled_sums(buckets, clock=clock, span=span, settled=clock - open_buckets)
    assert look(kept) == plain
    assert look(kept) == plain  # and `kept` was not changed by the first look


@given(
    st.dictionaries(
        st.text("abcdefghij", min_size=1, max_size=3),
        st.tuples(st.sampled_from([0.5, 1.0, 2.0, 3.0, -1.0]), st.integers(-1, 3)),
        max_size=80,
    ),
    st.integers(1, 10),
)
def test_the_top_k_by_count_is_the_full_sort_s_head(
    raw: dict[str, tuple[float, int]], k: int
) -> None:
    """rank_items scores only the items that weigh at least the k-th largest weight: ties at
    that weight included, the list is the head of the full order (count, velocity, item)."""
    current = {item: Tally(w, n) for item, (w, n) in raw.items()}
    before = {item: 0.25 * len(item) for item in raw}.get
    full = sorted(
        (
            (-t.weight, -(t.weight - (before(i) or 0.0)) / 10.0, i)
            for i, t in current.items()
            if t.events > 0
        )
    )
    assert [t.item_id for t in rank_items(current, before, 10.0, k)] == [i for *_, i in full[:k]]
