"""Percentiles, Core Web Vitals ratings and summaries: pure functions, checked against the
standard library and the textbook definition."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.field import QUANTILES, THRESHOLDS, percentile, rating, summarise

values = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=500
)
quantile = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def closest_ranks(data: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks, written from its definition with exact
    rational rank arithmetic: rank h = (n-1)q, value = x[floor h] + (h - floor h)(x[ceil h] - x[floor h])."""
    from fractions import Fraction

    xs = sorted(data)
    h = (len(xs) - 1) * Fraction(q)
    lo = math.floor(h)
    hi = math.ceil(h)
    return float(xs[lo] + (h - lo) * (Fraction(xs[hi]) - Fraction(xs[lo])))


def tolerance(data: Sequence[float]) -> float:
    return 1e-9 * max(1.0, max(abs(v) for v in data))


@settings(max_examples=300, deadline=None)
@given(values)
def test_percentile_matches_statistics_quantiles_inclusive(data: list[float]) -> None:
    xs = sorted(data)
    # statistics.quantiles needs two points before Python 3.13; one point is every quantile.
    expected = [xs[0]] * 99 if len(xs) == 1 else statistics.quantiles(xs, n=100, method="inclusive")
    for i, want in enumerate(expected, start=1):
        assert percentile(xs, i / 100) == pytest.approx(want, abs=tolerance(xs)), f"p{i}"


@settings(max_examples=300, deadline=None)
@given(values, quantile)
def test_percentile_matches_definition(data: list[float], q: float) -> None:
    xs = sorted(data)
    assert percentile(xs, q) == pytest.approx(closest_ranks(xs, q), abs=tolerance(xs))


@settings(max_examples=200, deadline=None)
@given(values, quantile, quantile)
def test_percentile_is_monotone_and_bounded(data: list[float], q1: float, q2: float) -> None:
    xs = sorted(data)
    lo, hi = sorted((q1, q2))
    a, b = percentile(xs, lo), percentile(xs, hi)
    assert xs[0] <= a <= xs[-1]
    assert a <= b + tolerance(xs)
    assert percentile(xs, 0.0) == xs[0]
    assert percentile(xs, 1.0) == xs[-1]


@settings(max_examples=100, deadline=None)
@given(values)
def test_percentile_of_sorted_order_statistics(data: list[float]) -> None:
    """At q = k/(n-1) the percentile is exactly the k-th smallest value."""
    xs = sorted(data)
    n = len(xs)
    for k in range(n) if n > 1 else []:
        q = k / (n - 1)
        assert percentile(xs, q) == pytest.approx(xs[k], abs=tolerance(xs))


def test_percentile_one_value() -> None:
    for q in (0.0, 0.5, 0.75, 0.95, 1.0):
        assert percentile([42.0], q) == 42.0


def test_percentile_two_values_interpolates() -> None:
    assert percentile([10.0, 20.0], 0.0) == 10.0
    assert percentile([10.0, 20.0], 0.5) == 15.0
    assert percentile([10.0, 20.0], 0.75) == 17.5
    assert percentile([10.0, 20.0], 0.95) == pytest.approx(19.5)
    assert percentile([10.0, 20.0], 1.0) == 20.0


def test_percentile_all_equal() -> None:
    xs = [3.25] * 37
    assert {percentile(xs, q) for q in (0.0, 0.1, 0.5, 0.75, 0.9, 0.95, 1.0)} == {3.25}


def test_percentile_known_values() -> None:
    xs = [float(v) for v in range(1, 11)]  # 1..10; rank (n-1)q
    assert percentile(xs, 0.5) == 5.5
    assert percentile(xs, 0.75) == pytest.approx(7.75)
    assert percentile(xs, 0.9) == pytest.approx(9.1)


def test_percentile_of_nothing_raises() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


# --- ratings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "value", "expected"),
    [
        ("LCP", 0, "good"),
        ("LCP", 2500, "good"),
        ("LCP", 2500.1, "needs_improvement"),
        ("LCP", 4000, "needs_improvement"),
        ("LCP", 4000.1, "poor"),
        ("INP", 200, "good"),
        ("INP", 200.1, "needs_improvement"),
        ("INP", 500, "needs_improvement"),
        ("INP", 500.1, "poor"),
        ("CLS", 0.0, "good"),
        ("CLS", 0.1, "good"),
        ("CLS", 0.1001, "needs_improvement"),
        ("CLS", 0.25, "needs_improvement"),
        ("CLS", 0.2501, "poor"),
        ("FCP", 1800, "good"),
        ("FCP", 1800.1, "needs_improvement"),
        ("FCP", 3000, "needs_improvement"),
        ("FCP", 3000.1, "poor"),
        ("TTFB", 800, "good"),
        ("TTFB", 800.1, "needs_improvement"),
        ("TTFB", 1800, "needs_improvement"),
        ("TTFB", 1800.1, "poor"),
    ],
)
def test_rating_boundaries(metric: str, value: float, expected: str) -> None:
    assert rating(metric, value) == expected


def test_thresholds_are_the_published_core_web_vitals() -> None:
    assert THRESHOLDS == {
        "LCP": (2500, 4000),
        "INP": (200, 500),
        "CLS": (0.1, 0.25),
        "FCP": (1800, 3000),
        "TTFB": (800, 1800),
    }


def test_rating_unknown_metric_raises() -> None:
    with pytest.raises(KeyError):
        rating("FID", 10)


# --- summarise ------------------------------------------------------------------------------


def test_summarise_known_values() -> None:
    xs = sorted([1000.0, 2000.0, 2500.0, 2600.0, 3000.0, 4000.0, 4500.0, 9000.0])
    out = summarise("LCP", xs)
    assert out["count"] == 8
    assert out["good"] == 0.375  # 1000, 2000, 2500
    assert out["needs_improvement"] == 0.375  # 2600, 3000, 4000
    assert out["poor"] == 0.25  # 4500, 9000
    assert out["p50"] == round(percentile(xs, 0.5), 1) == 2800.0
    assert out["p75"] == round(percentile(xs, 0.75), 1)
    assert out["p95"] == round(percentile(xs, 0.95), 1)
    assert set(out) == {"count", *QUANTILES, "good", "needs_improvement", "poor"}


def test_summarise_cls_keeps_four_decimals() -> None:
    out = summarise("CLS", [0.01234, 0.05678, 0.3])
    assert out["p50"] == 0.0568
    assert (out["good"], out["needs_improvement"], out["poor"]) == (round(2 / 3, 4), 0.0, round(1 / 3, 4))


def test_summarise_empty() -> None:
    assert summarise("INP", []) == {
        "count": 0,
        "p50": None,
        "p75": None,
        "p90": None,
        "p95": None,
        "good": None,
        "needs_improvement": None,
        "poor": None,
    }


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(THRESHOLDS)),
    st.lists(st.floats(min_value=0, max_value=10_000, allow_nan=False), min_size=1, max_size=300),
)
def test_summarise_shares_sum_to_one_and_match_counts(metric: str, data: list[float]) -> None:
    xs = sorted(data)
    out = summarise(metric, xs)
    n = len(xs)
    assert out["count"] == n
    shares = (out["good"], out["needs_improvement"], out["poor"])
    assert all(0.0 <= s <= 1.0 for s in shares)
    assert sum(shares) == pytest.approx(1.0, abs=2e-4)  # each share is rounded to 4 places
    ratings = [rating(metric, v) for v in xs]
    assert out["good"] == round(ratings.count("good") / n, 4)
    assert out["needs_improvement"] == round(ratings.count("needs_improvement") / n, 4)
    assert out["poor"] == round(ratings.count("poor") / n, 4)
    assert out["p50"] <= out["p75"] <= out["p90"] <= out["p95"]
    assert xs[0] - 0.1 <= out["p50"]
    assert out["p95"] <= xs[-1] + 0.1


def test_segment_values_are_every_value_ingest_can_store() -> None:
    """group_by on device/nav/connection reads the rollup cells of these lists only, so a value
    the ingest path can store but the list lacks would silently vanish from group_by answers."""
    import typing

    from app.api import field as api
    from app.field.stats import SEGMENT_VALUES
    from app.ingest import normalise
    from app.ingest.schemas import NavType

    user_agents = [
        "", "curl/8.0", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
        "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)", "Mozilla/5.0 (Linux; Android 14; SM-X200)",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36", "Mozilla/5.0 (X11; Linux x86_64)",
        "SomeApp/1.0",
    ]  # fmt: skip
    devices = {normalise.device_class(ua, width) for ua in user_agents for width in (None, 360, 900, 1400)}
    assert devices == set(SEGMENT_VALUES["device"])
    connections = {
        normalise.connection_type(t) for t in ("slow-2g", "2g", "3g", "4g", "5g", "", None, "wifi")
    }
    assert connections == set(SEGMENT_VALUES["connection"])
    assert set(SEGMENT_VALUES["nav"]) == set(typing.get_args(NavType))
    # The API accepts exactly these as filters.
    for name, literal in (("device", api.Device), ("nav", api.Nav), ("connection", api.Connection)):
        assert set(typing.get_args(literal)) == set(SEGMENT_VALUES[name]), name
