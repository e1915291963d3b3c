"""Regression detection on generated distributions: a true change is found, no change is not,
too few samples say so. Seeds are fixed, and each case is repeated over several seeds so a test
does not pass by luck of one draw."""

from __future__ import annotations

import numpy as np
import pytest

from app.budgets.regress import Thresholds, field_regression, lab_regression, periods

SEEDS = range(10)


def lognormal(seed: int, median_ms: float, n: int, sigma: float = 0.25) -> list[float]:
    return list(np.random.default_rng(seed).lognormal(np.log(median_ms), sigma, n))


@pytest.mark.parametrize("seed", SEEDS)
def test_lab_true_change_is_detected(seed: int) -> None:
    before = lognormal(seed, 1200, 20, sigma=0.2)
    after = lognormal(seed + 1000, 1680, 20, sigma=0.2)  # +40 %
    r = lab_regression(before, after, metric="step:checkout", since="deploy abc1234")
    assert r.outcome == "regressed", r.summary
    assert r.p_value is not None
    assert r.p_value < 0.05
    assert r.delta is not None
    assert 250 < r.delta < 750
    assert r.effect is not None
    assert r.effect > 0.5
    assert r.summary.startswith("step:checkout median +")
    assert "since deploy abc1234" in r.summary


@pytest.mark.parametrize("seed", SEEDS)
def test_lab_faster_is_an_improvement_not_a_regression(seed: int) -> None:
    r = lab_regression(
        lognormal(seed, 1500, 20, 0.2), lognormal(seed + 1000, 1000, 20, 0.2), metric="duration"
    )
    assert r.outcome == "improved"
    assert r.delta is not None
    assert r.delta < 0


def test_lab_no_change_is_not_detected() -> None:
    outcomes = [
        lab_regression(lognormal(s, 1200, 15), lognormal(s + 1000, 1200, 15), metric="duration").outcome
        for s in range(40)
    ]
    # Same distribution: a false alarm needs p < 0.05 *and* a shift past the 5 % floor.
    assert outcomes.count("regressed") <= 1, outcomes


def test_lab_significant_but_tiny_shift_is_below_the_effect_floor() -> None:
    base = lognormal(1, 1000, 200, sigma=0.01)
    cur = [v * 1.02 for v in lognormal(2, 1000, 200, sigma=0.01)]  # +2 %, very consistent
    r = lab_regression(base, cur, metric="duration")
    assert r.p_value is not None
    assert r.p_value < 0.001
    assert r.outcome == "no-change"
    # With a 1 % floor the same shift counts.
    looser = lab_regression(base, cur, metric="duration", thresholds=Thresholds(min_effect_pct=1.0))
    assert looser.outcome == "regressed"


def test_lab_too_few_runs_is_insufficient() -> None:
    r = lab_regression([1000, 1100, 1050], lognormal(0, 2000, 10), metric="duration")
    assert r.outcome == "insufficient-data"
    assert r.p_value is None
    assert r.baseline_n == 3
    assert r.current_n == 10
    assert "too few samples" in r.summary


def test_scores_regress_downwards() -> None:
    before = list(np.random.default_rng(0).normal(0.95, 0.01, 12))
    after = list(np.random.default_rng(1).normal(0.80, 0.01, 12))
    r = lab_regression(before, after, metric="score:performance", unit="", higher_is_worse=False)
    assert r.outcome == "regressed"


@pytest.mark.parametrize("seed", range(5))
def test_field_p75_true_change_is_detected_with_an_interval(seed: int) -> None:
    before = lognormal(seed, 2000, 2000, sigma=0.5)
    after = lognormal(seed + 1000, 2300, 2000, sigma=0.5)  # +15 % at every quantile
    r = field_regression(before, after, metric="LCP", since="deploy abc1234")
    assert r.outcome == "regressed", r.summary
    assert r.interval is not None
    assert 0 < r.interval[0] < r.delta < r.interval[1]
    true_delta = (2300 - 2000) * np.exp(0.5 * 0.6745)
    assert r.interval[0] < true_delta * 1.6
    assert r.interval[1] > true_delta * 0.5
    assert r.p_value is not None
    assert r.p_value < 0.05
    assert r.summary.startswith("LCP p75 +")
    assert "ms (p " in r.summary
    assert "since deploy abc1234" in r.summary


def test_field_no_change_is_not_detected() -> None:
    outcomes = [
        field_regression(
            lognormal(s, 2000, 1500, 0.5), lognormal(s + 1000, 2000, 1500, 0.5), metric="LCP"
        ).outcome
        for s in range(10)
    ]
    assert outcomes.count("regressed") == 0, outcomes


def test_field_too_few_samples_is_insufficient() -> None:
    r = field_regression(lognormal(0, 2000, 99), lognormal(1, 4000, 5000), metric="INP")
    assert r.outcome == "insufficient-data"
    assert r.baseline_n == 99


def test_field_ignores_non_finite_values() -> None:
    base = [*lognormal(0, 2000, 300), float("nan"), float("inf")]
    r = field_regression(base, lognormal(1, 2000, 300), metric="LCP")
    assert r.baseline_n == 300


def test_periods_previous_window_and_deploy_marker() -> None:
    hour = 3_600_000
    assert periods(now_ms=10 * hour, window_ms=2 * hour) == ((6 * hour, 8 * hour), (8 * hour, 10 * hour))
    # Deployed 1 h ago with a 2 h window: the current side is cut at now.
    assert periods(now_ms=10 * hour, window_ms=2 * hour, marker_ms=9 * hour) == (
        (7 * hour, 9 * hour),
        (9 * hour, 10 * hour),
    )
    with pytest.raises(ValueError, match="window"):
        periods(now_ms=0, window_ms=0)
