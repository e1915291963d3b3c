"""Regression detection: did a metric get worse in a window compared with its baseline? Pure.

* **Lab runs** (few samples, noisy, not normal): a two-sided Mann-Whitney U test on the run
  values, reported as a regression only when p < alpha *and* the shift of the medians clears an
  effect-size floor (relative to the baseline median, and absolute), and both sides have a
  minimum number of runs. A significant 0.3 % shift is not worth anyone's afternoon.
* **Field p75** (many samples, heavy tails): a bootstrap of the difference of the two p75s
  (resampling each side independently). The change counts when the percentile interval of the
  difference excludes 0 and the point estimate clears the same effect floor; the p-value is the
  two-sided bootstrap tail share.

The baseline is either the previous period of the same length, or the period of the same length
before a deploy marker (see :func:`periods`). Results read like
"LCP p75 +420 ms (p = 0.01) since deploy abc123".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

# scipy.stats is imported where a test runs: importing it takes ~1 s, which every `fieldlab gate`
# (and the server's start-up) would pay even when no budget asks for a regression check.

Outcome = Literal["regressed", "improved", "no-change", "insufficient-data"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    alpha: float = 0.05
    min_effect_pct: float = 5.0  # |shift| must be at least this % of the baseline statistic
    min_effect_abs: float = 0.0  # … and at least this much in the metric's unit
    min_samples: int = 5
    resamples: int = 2000  # field bootstrap
    max_samples: int = 5000  # field values per side fed to the bootstrap (a fixed-seed subsample)
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Regression:
    metric: str
    stat: str  # "median" (lab) or "p75" (field)
    outcome: Outcome
    baseline: float | None
    current: float | None
    delta: float | None
    p_value: float | None
    baseline_n: int
    current_n: int
    unit: str = ""
    since: str = ""  # "deploy abc123" or "previous period"
    interval: tuple[float, float] | None = None  # bootstrap interval of the delta (field)
    effect: float | None = None  # rank-biserial correlation (lab), -1..1, positive = larger now
    higher_is_worse: bool = True

    @property
    def summary(self) -> str:
        since = f" since {self.since}" if self.since else ""
        if self.outcome == "insufficient-data":
            return (
                f"{self.metric} {self.stat}: too few samples ({self.baseline_n} baseline, "
                f"{self.current_n} current){since}"
            )
        p = "" if self.p_value is None else f" ({_fmt_p(self.p_value)})"
        verdict = "" if self.outcome == "no-change" else f" {self.outcome}"
        return f"{self.metric} {self.stat} {self.change}{p}{since}{verdict}"

    @property
    def change(self) -> str:
        """The shift with its sign and unit ("+420 ms"); "?" without enough data."""
        if self.delta is None:
            return "?"
        sign = "+" if self.delta >= 0 else "-"
        return f"{sign}{_fmt(abs(self.delta), self.unit)}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = self.summary
        return out


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit == "bytes":
        return f"{value:,.0f} bytes"
    return f"{value:.3g}{' ' + unit if unit else ''}"


def _fmt_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}" if p < 0.1 else f"p = {p:.2f}"


def _outcome(delta: float, base: float, significant: bool, th: Thresholds, higher_is_worse: bool) -> Outcome:
    floor = max(th.min_effect_abs, abs(base) * th.min_effect_pct / 100)
    if not significant or abs(delta) < floor or delta == 0:
        return "no-change"
    return "regressed" if (delta > 0) == higher_is_worse else "improved"


def lab_regression(
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    metric: str,
    unit: str = "ms",
    since: str = "",
    thresholds: Thresholds = Thresholds(),
    higher_is_worse: bool = True,
) -> Regression:
    """Compare lab run values (e.g. a step's duration over runs) before and after."""
    base, cur = _clean(baseline), _clean(current)
    if len(base) < thresholds.min_samples or len(cur) < thresholds.min_samples:
        return Regression(
            metric,
            "median",
            "insufficient-data",
            _median(base),
            _median(cur),
            None,
            None,
            len(base),
            len(cur),
            unit,
            since,
            higher_is_worse=higher_is_worse,
        )
    from scipy import stats

    res = stats.mannwhitneyu(cur, base, alternative="two-sided", method="auto")
    p = float(res.pvalue)
    # Rank-biserial correlation from U of `cur`: +1 when every current run is slower.
    effect = 2 * float(res.statistic) / (len(base) * len(cur)) - 1
    b, c = float(np.median(base)), float(np.median(cur))
    delta = c - b
    outcome = _outcome(delta, b, p < thresholds.alpha, thresholds, higher_is_worse)
    return Regression(
        metric,
        "median",
        outcome,
        b,
        c,
        delta,
        p,
        len(base),
        len(cur),
        unit,
        since,
        effect=effect,
        higher_is_worse=higher_is_worse,
    )


def field_regression(
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    metric: str,
    unit: str = "ms",
    since: str = "",
    q: float = 0.75,
    thresholds: Thresholds = Thresholds(min_samples=100),
    higher_is_worse: bool = True,
) -> Regression:
    """Compare a field percentile (p75 by default) of real-user values before and after."""
    stat = f"p{round(q * 100)}"
    base, cur = _clean(baseline), _clean(current)
    n_base, n_cur = len(base), len(cur)
    if n_base < thresholds.min_samples or n_cur < thresholds.min_samples:
        return Regression(
            metric,
            stat,
            "insufficient-data",
            _quantile(base, q),
            _quantile(cur, q),
            None,
            None,
            n_base,
            n_cur,
            unit,
            since,
            higher_is_worse=higher_is_worse,
        )
    rng = np.random.default_rng(thresholds.seed)
    base, cur = _subsample(base, thresholds.max_samples, rng), _subsample(cur, thresholds.max_samples, rng)
    b, c = float(np.quantile(base, q)), float(np.quantile(cur, q))

    def diff(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], axis: int = -1) -> Any:
        return np.quantile(y, q, axis=axis) - np.quantile(x, q, axis=axis)

    from scipy import stats

    res = stats.bootstrap(
        (base, cur),
        diff,
        n_resamples=thresholds.resamples,
        method="percentile",
        vectorized=True,
        confidence_level=1 - thresholds.alpha,
        rng=rng,
        batch=200,
    )
    dist = np.asarray(res.bootstrap_distribution)
    tail = min(float(np.mean(dist <= 0)), float(np.mean(dist >= 0)))
    p = min(1.0, max(2 * tail, 1 / len(dist)))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    significant = lo > 0 or hi < 0
    outcome = _outcome(c - b, b, significant, thresholds, higher_is_worse)
    return Regression(
        metric,
        stat,
        outcome,
        b,
        c,
        c - b,
        p,
        n_base,
        n_cur,
        unit,
        since,
        (lo, hi),
        higher_is_worse=higher_is_worse,
    )


def periods(
    *, now_ms: int, window_ms: int, marker_ms: int | None = None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(baseline, current)`` as ``[start, end)`` ms ranges.

    Without a marker: the last ``window_ms`` against the ``window_ms`` before it. With a deploy
    marker: the ``window_ms`` after the deploy (cut at now) against the ``window_ms`` before it.
    """
    if window_ms <= 0:
        raise ValueError("window must be positive")
    if marker_ms is None:
        return (now_ms - 2 * window_ms, now_ms - window_ms), (now_ms - window_ms, now_ms)
    return (marker_ms - window_ms, marker_ms), (marker_ms, min(now_ms, marker_ms + window_ms))


def _clean(values: Sequence[float]) -> np.ndarray[Any, Any]:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    finite: np.ndarray[Any, Any] = arr[np.isfinite(arr)]
    return finite


def _subsample(values: np.ndarray[Any, Any], most: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    if len(values) <= most:
        return values
    picked: np.ndarray[Any, Any] = rng.choice(values, size=most, replace=False)
    return picked


def _median(values: np.ndarray[Any, Any]) -> float | None:
    return float(np.median(values)) if len(values) else None


def _quantile(values: np.ndarray[Any, Any], q: float) -> float | None:
    return float(np.quantile(values, q)) if len(values) else None
