"""Lab numbers beside the field's: the latest per page group (the dashboard's page-groups table:
each of the site's checks' newest run that measured pages) and each check's runs over a range
(the trends charts and ``GET /api/v1/sites/{id}/lab``). A run's navigations are mapped to page
groups by the site's own rules (the same function the ingest path uses for field data)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import col, select

from app import checks as check_data
from app.budgets.compare import LIGHTHOUSE_AUDITS, lab_value
from app.db import Database
from app.ingest.normalise import page_group
from app.models import Check, CheckRun, Site

# Lighthouse audit ids of the vitals a lab run can have (a navigation has no INP; Lighthouse's
# server-response-time is the document's alone, not TTFB as web-vitals measures it).
LIGHTHOUSE = {m: LIGHTHOUSE_AUDITS[m] for m in ("LCP", "CLS", "FCP")}
RECENT_RUNS = 10
MEASURED = ("passed", "flaky", "failed")
# Runs per check on a trends chart: a check every 5 minutes has 8,640 runs in 30 days, whose
# results would be megabytes to read for one page view; evenly spread ones show the trend.
MAX_TREND_RUNS = 180


def _navigations(kind: str, result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if kind == "lighthouse":
        url = result.get("final_url") or result.get("url") or ""
        metrics = result.get("metrics") or {}
        return [(url, {m: metrics.get(audit) for m, audit in LIGHTHOUSE.items()})]
    out = []
    for step in result.get("steps") or []:
        for nav in step.get("navigations") or [] if isinstance(step, dict) else []:
            if isinstance(nav, dict) and nav.get("url"):
                out.append((str(nav["url"]), dict(nav.get("vitals") or {})))
    return out


async def latest_by_group(*, db: Database, site: Site) -> dict[str, dict[str, Any]]:
    """page group -> {"LCP", "CLS", "INP" (flows only), "run_id", "check"}."""
    found: list[tuple[CheckRun, str, list[tuple[str, dict[str, Any]]]]] = []
    for check in await check_data.list_checks(db=db):
        if check.site_id != site.id or check.id is None:
            continue
        # A failed flow still measured the pages it reached; an error run measured nothing.
        for run in await check_data.list_runs(db=db, check_id=check.id, limit=RECENT_RUNS):
            navigations = _navigations(check.kind, run.result or {}) if run.status in MEASURED else []
            if navigations:
                found.append((run, check.name, navigations))
                break
    out: dict[str, dict[str, Any]] = {}
    for run, name, navigations in sorted(found, key=lambda f: -f[0].started_ms):
        for url, vitals in navigations:
            group = page_group(urlsplit(url).path or "/", site.page_groups)
            if group not in out:
                out[group] = {
                    **{m: vitals.get(m) for m in ("LCP", "CLS", "INP")},
                    "run_id": run.id,
                    "check": name,
                }
    return out


def run_vitals(
    kind: str, result: dict[str, Any], *, group: str | None, rules: Sequence[dict[str, str]]
) -> dict[str, float]:
    """A run's lab vitals: each metric from the first navigation that has it (within page
    ``group`` if one is given, by the site's page-group ``rules``)."""
    out: dict[str, float] = {}
    for url, vitals in _navigations(kind, result):
        if group is not None and page_group(urlsplit(url).path or "/", rules) != group:
            continue
        for metric, value in vitals.items():
            if metric not in out and isinstance(value, int | float) and not isinstance(value, bool):
                out[metric] = float(value)
    return out


def spread(n: int, limit: int) -> list[int]:
    """At most ``limit`` indices of ``range(n)``, evenly spaced, the last one always in."""
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


async def lab_trends(
    *, db: Database, site: Site, since_ms: int, until_ms: int, group: str | None, device: str | None
) -> list[dict[str, Any]]:
    """Each of the site's checks that measured pages in the range (and on ``device``, if one is
    chosen): ``{"check", "check_id", "kind", "device", "points": {metric: [(started ms, value,
    run id), ...]}, "summary": {metric: {"runs", "median", "latest"}}, "total", "sampled"}``,
    from at most MAX_TREND_RUNS of its ``total`` runs in the range, spread over it (``sampled``
    if there were more)."""
    checks = [c for c in await check_data.list_checks(db=db) if c.site_id == site.id and c.id is not None]
    out = []
    for check in checks:
        if device is not None and check.device != device:
            continue
        points, total = await _check_points(db, check, since_ms, until_ms, group, site.page_groups)
        if any(points.values()):
            summary = {
                m: {
                    "runs": len(series),
                    "median": statistics.median(p[1] for p in series),
                    "latest": series[-1][1],
                }
                for m, series in points.items()
            }
            out.append({"check": check.name, "check_id": check.id, "kind": check.kind, "device": check.device,
                        "points": points, "summary": summary, "sampled": total > MAX_TREND_RUNS, "total": total})  # fmt: skip
    return out


async def runs_in_range(
    db: Database, check_id: int, since_ms: int, until_ms: int
) -> tuple[list[CheckRun], int]:
    """At most MAX_TREND_RUNS of the check's measured runs in the range, spread over it, oldest
    first; and how many there are in all."""
    in_range = (
        CheckRun.check_id == check_id,
        col(CheckRun.started_ms) >= since_ms,
        col(CheckRun.started_ms) < until_ms,
        col(CheckRun.status).in_(MEASURED),
    )
    async with db.read() as session:
        ids = (
            await session.exec(select(CheckRun.id).where(*in_range).order_by(col(CheckRun.started_ms)))
        ).all()
        chosen = [ids[i] for i in spread(len(ids), MAX_TREND_RUNS)]
        runs = (
            (await session.exec(select(CheckRun).where(col(CheckRun.id).in_(chosen)))).all() if chosen else []
        )
    return sorted(runs, key=lambda r: r.started_ms), len(ids)


async def _check_points(
    db: Database,
    check: Check,
    since_ms: int,
    until_ms: int,
    group: str | None,
    rules: Sequence[dict[str, str]],
) -> tuple[dict[str, list[tuple[int, float, int]]], int]:
    """Values per metric of the runs chosen, and how many measured runs the range has."""
    assert check.id is not None
    runs, total = await runs_in_range(db, check.id, since_ms, until_ms)
    points: dict[str, list[tuple[int, float, int]]] = {}
    for run in runs:
        assert run.id is not None
        for metric, value in run_vitals(check.kind, run.result or {}, group=group, rules=rules).items():
            points.setdefault(metric, []).append((run.started_ms, value, run.id))
    return points, total


def compare_rows(before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two ``lab_trends`` answers as rows of (check, metric): the median and run count of each
    period (None where a period has no runs), checks in the order they were listed."""
    rows = []
    by_id = {c["check_id"]: c for c in [*before, *after]}
    periods = [{c["check_id"]: c["summary"] for c in period} for period in (before, after)]
    for check_id, check in by_id.items():
        metrics = {m for period in periods for m in period.get(check_id, {})}
        for metric in [m for m in ("LCP", "INP", "CLS", "FCP", "TTFB") if m in metrics]:
            a, b = (period.get(check_id, {}).get(metric) for period in periods)
            rows.append({"check": check["check"], "check_id": check_id, "metric": metric,
                         "a": a["median"] if a else None, "b": b["median"] if b else None,
                         "runs_a": a["runs"] if a else 0, "runs_b": b["runs"] if b else 0})  # fmt: skip
    return rows


# A check's own charts: (title, unit, the regressions API's lab metrics drawn, "*" standing for
# each step's name; the fewest series worth a chart).
# Each step's slowest page (``step:NAME:LCP``): what a budget judges (on a step, or the slowest of
# all steps without one), where the Vitals chart shows the flow's first navigation. With one step
# it would repeat Vitals, so it needs two.
STEP_LCP = "LCP by step"
CHECK_CHARTS: dict[str, list[tuple[str, str, list[str], int]]] = {
    "flow": [
        ("Duration", "ms", ["duration", "step:*"], 1),
        ("Vitals", "ms", ["LCP", "FCP", "TTFB", "INP"], 1),
        (STEP_LCP, "ms", ["step:*:LCP"], 2),
        ("CLS", "CLS", ["CLS"], 1),
    ],
    "lighthouse": [
        (
            "Scores",
            "score",
            ["score:performance", "score:accessibility", "score:best-practices", "score:seo"],
            1,
        ),
        ("Metrics", "ms", ["LCP", "FCP", "TBT", "SI"], 1),
        ("CLS", "CLS", ["CLS"], 1),
        ("Duration", "ms", ["duration"], 1),
    ],
}
MAX_STEP_SERIES = 8


def _series_name(metric: str) -> str:
    return "run (total)" if metric == "duration" else metric.removeprefix("score:")


def check_charts(kind: str, runs: Sequence[CheckRun]) -> list[dict[str, Any]]:
    """``[{"title", "unit", "series": [{"name", "y"}]}]`` over ``runs`` (one y per run, None
    where a run has no value), with the numbers the regressions API compares (budgets.compare.lab_value;
    for flows also each step's LCP as budgets judge it, STEP_LCP); scores in 0-100. Series without
    any value and charts without any series are left out."""
    steps: list[str] = []
    for run in reversed(runs):  # the newest run's steps first, in their order
        for step in (run.result or {}).get("steps") or []:
            name = step.get("name") if isinstance(step, dict) else None
            if isinstance(name, str) and name not in steps and len(steps) < MAX_STEP_SERIES:
                steps.append(name)
    charts = []
    for title, unit, metrics, fewest in CHECK_CHARTS.get(kind, []):
        series = []
        for metric, name in [
            pair
            for spec in metrics
            for pair in (
                [(spec.replace("*", n), n) for n in steps] if "*" in spec else [(spec, _series_name(spec))]
            )
        ]:
            y = [lab_value(r.result, metric) for r in runs]
            if unit == "score":
                y = [None if v is None else round(v * 100, 1) for v in y]
            if any(v is not None for v in y):
                series.append({"name": name, "y": y})
        if len(series) >= fewest:
            charts.append({"title": title, "unit": unit, "series": series})
    return charts
