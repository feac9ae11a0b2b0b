"""Merchant funnel maths (models/funnel.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from models.funnel import exposure_share, funnel, rate, sum_counts, window_buckets


def test_rates_follow_the_funnel() -> None:
    f = funnel({"view": 8, "cart": 2, "purchase": 1, "like": 3})
    assert f.counts == {"view": 8, "like": 3, "share": 0, "cart": 2, "purchase": 1, "hide": 0}
    assert f.rates == {"view_to_cart": 0.25, "cart_to_purchase": 0.5, "view_to_purchase": 0.125}


def test_no_denominator_is_no_rate_not_zero() -> None:
    f = funnel({"cart": 1})
    assert f.rates["view_to_cart"] is None
    assert f.rates["cart_to_purchase"] == 0.0
    assert rate(0, 0) is None
    assert exposure_share(0, 0) is None
    assert exposure_share(2, 8) == 0.25


def test_rates_are_reported_as_measured_even_above_one() -> None:
    assert funnel({"view": 1, "cart": 3}).rates["view_to_cart"] == 3.0


def test_sum_counts_adds_field_by_field() -> None:
    assert sum_counts([{"view": 1}, {}, {"view": 2, "exposure": 4}]) == {"view": 3, "exposure": 4}


@given(
    now=st.floats(min_value=1e9, max_value=2e9),
    window_s=st.floats(min_value=1.0, max_value=86_400.0),
    bucket_s=st.sampled_from([1.0, 5.0, 60.0]),
)
def test_window_buckets_cover_the_window_and_at_most_one_bucket_more(
    now: float, window_s: float, bucket_s: float
) -> None:
    buckets = window_buckets(now, window_s, bucket_s)
    start, end = buckets[0] * bucket_s, (buckets[-1] + 1) * bucket_s
    assert start <= now - window_s
    assert end > now
    assert (end - start) <= window_s + 2 * bucket_s
