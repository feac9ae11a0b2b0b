"""The learner's refresh pacing (streams/runtime/refresh.py): bounded, and back where it was
configured once the learner has caught up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.runtime.refresh import LAG_TARGET_S, LONGEST_S, SHORTEST_BACKOFF_S, Refreshes


@given(
    configured=st.sampled_from([0.0, 0.5, 1.0, 5.0, 60.0]),
    lags=st.lists(st.floats(min_value=0.0, max_value=600.0), max_size=60),
)
def test_the_interval_stays_between_the_configured_one_and_the_longest(
    configured: float, lags: list[float]
) -> None:
    refreshes = Refreshes(configured)
    for lag in lags:
        interval = refreshes.pace(lag)
        assert configured <= interval <= max(LONGEST_S, configured)


@pytest.mark.parametrize("configured", [0.0, 1.0])
def test_a_learner_that_caught_up_returns_to_the_configured_interval(configured: float) -> None:
    refreshes = Refreshes(configured)
    for _ in range(20):  # far behind: backs off to the longest
        refreshes.pace(LAG_TARGET_S * 20)
    assert refreshes.interval_s == LONGEST_S
    for _ in range(40):
        refreshes.pace(0.0)
    assert refreshes.interval_s == configured


def test_every_batch_backs_off_to_a_real_interval_first() -> None:
    refreshes = Refreshes(0.0)
    assert refreshes.pace(LAG_TARGET_S * 2) == SHORTEST_BACKOFF_S


def test_a_longer_interval_puts_off_a_user_refreshed_recently() -> None:
    refreshes = Refreshes(1.0)
    assert refreshes.take(["ann"], now=0.0) == ["ann"]
    refreshes.pace(LAG_TARGET_S * 2)  # 2 s from now on
    assert refreshes.take(["ann"], now=1.5) == []
    assert refreshes.take([], now=2.0) == ["ann"]
