"""The deploy watch's verdicts (pure): status, signed margin, and where a regression is."""

from __future__ import annotations

from app.budgets.regress import Regression
from app.budgets.watch import regression_verdict


def _r(outcome: str, base: float, cur: float, higher_is_worse: bool = True) -> Regression:
    return Regression(
        "LCP", "p75", outcome, base, cur, cur - base, 0.001, 500, 400, "ms", "deploy abc1234",  # type: ignore[arg-type]
        higher_is_worse=higher_is_worse,
    )  # fmt: skip


def test_a_regression_is_a_warning_that_names_its_page_groups_worst_first() -> None:
    groups = [("/product/:id", _r("regressed", 2600, 4400)), ("/cart", _r("regressed", 2000, 2300))]
    v = regression_verdict(_r("regressed", 2600, 3300), device="mobile", groups=groups)
    assert v.budget_id == "regression:LCP:mobile"
    assert v.status == "warn"
    assert (v.actual, v.limit, v.margin, v.samples) == (3300, 2600, -700, 400)
    assert v.detail == (
        "LCP p75 +700 ms (p = 0.001) since deploy abc1234 regressed (mobile); "
        "page groups: /product/:id +1800 ms, /cart +300 ms"
    )


def test_a_regression_spread_thin_says_no_group_regressed_alone() -> None:
    v = regression_verdict(_r("regressed", 2600, 3300), device="desktop")
    assert v.detail.endswith("regressed (desktop); no page group regressed on its own")


def test_no_change_and_improvement_pass_without_page_groups() -> None:
    same = regression_verdict(_r("no-change", 2600, 2610), device="mobile")
    assert (same.status, same.detail) == ("pass", "LCP p75 +10 ms (p = 0.001) since deploy abc1234 (mobile)")
    better = regression_verdict(_r("improved", 2600, 2000), device="mobile")
    assert better.status == "pass"
    assert better.margin == 600
    assert "page groups" not in better.detail


def test_insufficient_data_is_its_own_status_and_a_lower_is_worse_metric_keeps_its_sign() -> None:
    few = Regression("LCP", "p75", "insufficient-data", 2600, None, None, None, 500, 3, "ms")
    assert regression_verdict(few, device="mobile").status == "insufficient-data"
    assert few.change == "?"
    score = regression_verdict(_r("regressed", 0.9, 0.8, higher_is_worse=False), device="mobile")
    assert score.margin is not None
    assert score.margin < 0
