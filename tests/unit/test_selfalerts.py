"""Self-alert rules judged from live numbers, and the health page's histogram quantiles."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from app.config import Settings
from app.observability import Metrics
from app.selfalerts import SelfAlerts
from app.ui.health import quantile


@dataclass
class Lagging:
    lag_s: float


@dataclass
class Writer:
    oldest_wait_s: float = 0.0
    depth: int = 0


def rules(settings: Settings, metrics: Metrics, lag_s: float, writer_lag_s: float = 0.0) -> dict[str, str]:
    alerts = SelfAlerts(settings=settings, metrics=metrics, writer=Writer(writer_lag_s), scheduler=Lagging(lag_s),
                        recorder=None)  # type: ignore[arg-type]  # fmt: skip
    return {v.budget_id: v.status for v in alerts.verdicts()}


def test_each_rule_against_its_threshold(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), self_alert_scheduler_lag_s=60, self_alert_min_free_mb=0,
                        self_alert_reject_rate=0.25)  # fmt: skip
    metrics = Metrics(data_dir=str(tmp_path))
    assert rules(settings, metrics, lag_s=5) == {
        "self:ingest-reject-rate": "insufficient-data",  # no beacons: no evidence either way
        "self:writer-lag": "pass",
        "self:scheduler-lag": "pass",
        "self:disk-free": "pass",
    }
    metrics.beacons_accepted.inc(3)
    metrics.beacons_rejected.labels("bad_json").inc(1)  # 25 %: at the threshold, not over it
    assert rules(settings, metrics, lag_s=61)["self:scheduler-lag"] == "fail"
    assert (
        rules(settings, metrics, lag_s=0, writer_lag_s=settings.self_alert_writer_lag_s + 1)[
            "self:writer-lag"
        ]
        == "fail"
    )
    verdicts = rules(settings, metrics, lag_s=0)
    assert verdicts["self:ingest-reject-rate"] == "pass"
    metrics.beacons_rejected.labels("origin").inc(2)
    assert rules(replace(settings, scheduler=False), metrics, lag_s=999) == {
        "self:ingest-reject-rate": "fail",
        "self:writer-lag": "pass",
        "self:disk-free": "pass",  # and no scheduler rule where no scheduler runs
    }


def test_reject_rate_counts_since_the_previous_evaluation(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), self_alert_reject_rate=0.1, self_alert_min_free_mb=0)
    metrics = Metrics(data_dir=str(tmp_path))
    alerts = SelfAlerts(settings=settings, metrics=metrics, writer=Writer(), scheduler=Lagging(0),
                        recorder=None)  # type: ignore[arg-type]  # fmt: skip
    metrics.beacons_rejected.labels("bad_json").inc(50)
    first = {v.budget_id: v for v in alerts.verdicts()}["self:ingest-reject-rate"]
    assert (first.status, first.actual, first.samples) == ("fail", 1.0, 50)
    metrics.beacons_accepted.inc(100)
    second = {v.budget_id: v for v in alerts.verdicts()}["self:ingest-reject-rate"]
    assert (second.status, second.actual, second.samples) == ("pass", 0.0, 100)


def test_histogram_quantiles_interpolate_within_buckets() -> None:
    metrics = Metrics()
    for seconds in [0.002] * 50 + [0.02] * 40 + [0.2] * 10:
        metrics.commit_seconds.observe(seconds)
    samples = metrics.samples()
    # 50 of 100 are at or below the 0.0025 bucket: the median is its upper bound.
    assert quantile(samples, "fieldlab_writer_commit_seconds", 0.5) == 0.0025
    # The 90th is the last of the 40 in (0.01, 0.025].
    assert abs(quantile(samples, "fieldlab_writer_commit_seconds", 0.9) - 0.025) < 1e-9  # type: ignore[operator]
    # The 95th is halfway through the 10 in (0.1, 0.25].
    assert abs(quantile(samples, "fieldlab_writer_commit_seconds", 0.95) - 0.175) < 1e-9  # type: ignore[operator]
    assert quantile(samples, "fieldlab_lighthouse_duration_seconds", 0.5) is None
