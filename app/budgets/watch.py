"""Deploy watch: regressions after a deploy raise alerts, as budget breaches do.

For FIELDLAB_DEPLOY_WATCH_H after a site's latest deploy marker, the ``budgets`` job compares the
site's field p75 since the deploy (up to WINDOW_MS of it) with the WINDOW_MS before it, for each
metric on mobile and on desktop (the same comparison as ``GET /api/v1/sites/ID/regressions
?marker=latest&device=…``), and records each as a verdict of the ``site:ID`` scope. A regression
is a ``warn``: it moves that verdict's alert state through the usual K-of-N rule and webhooks, and
the next deploy that compares clean recovers it. Budgets still decide what fails; a regression
only says something changed with a deploy.

The budget ids (``regression:LCP:mobile``) do not name the deploy, so one alert state follows a
metric across deploys. After the watch period the state stays as last judged, until the next
deploy.

With lab thresholds given, each of the site's checks with runs on both sides is compared too, on
the same window (Mann-Whitney U, as ``GET /api/v1/checks/ID/regressions?marker=latest``): a flow's
whole duration and each step's LCP as budgets judge it (``step:NAME:LCP``, the steps of its newest
run), a Lighthouse audit's performance score, LCP, TBT and CLS. Their ids are
``regression:check:ID:METRIC``, in the same ``site:ID`` scope. Each check's runs are read once.

A regressed field verdict also says where: the same comparison for each of the device's MAX_GROUPS
busiest page groups, and the detail names those that regressed on their own, worst first
("…; page groups: /product/:id +1100 ms"). Only then, so a quiet deploy costs no more
bootstraps; one alert state per metric and device, not per page group, keeps alerts few.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from app import checks as check_data
from app.budgets.compare import (
    FIELD_METRICS,
    Window,
    busiest_page_groups,
    field_values,
    lab_results,
    lab_value,
    unit_of,
    window_for,
)
from app.budgets.regress import Regression, Thresholds, field_regression, lab_regression
from app.budgets.store import find_marker
from app.budgets.verdict import Status, Verdict
from app.db import Database
from app.models import Check, Site

WINDOW_MS = 24 * 3_600_000  # the API's default window
DEVICES = ("mobile", "desktop")
MAX_GROUPS = 10  # page groups compared behind a regressed metric and device
MAX_STEPS = 8  # a flow's steps whose LCP is watched (one alert state each)
LIGHTHOUSE_WATCHED = ("score:performance", "LCP", "TBT", "CLS")
_STATUS: dict[str, Status] = {"regressed": "warn", "insufficient-data": "insufficient-data"}


def regression_verdict(
    r: Regression, *, device: str, groups: Sequence[tuple[str, Regression]] = ()
) -> Verdict:
    """A comparison as a verdict: ``warn`` when regressed, ``pass`` when unchanged or improved.
    ``limit`` is the baseline p75 and ``margin`` the change, signed like a budget's (negative is
    worse). ``groups`` are the page groups that regressed on their own, worst first."""
    return _verdict(
        r,
        f"regression:{r.metric}:{device}",
        f"{r.metric} p75 on {device} since the latest deploy",
        f"{r.summary} ({device}){_where(r, groups)}",
    )


def lab_verdict(r: Regression, check: Check) -> Verdict:
    """A check's comparison (medians) as a verdict, as :func:`regression_verdict`."""
    return _verdict(
        r,
        f"regression:check:{check.id}:{r.metric}",
        f"{check.name}: {r.metric} median since the latest deploy",
        f"{r.summary} (check {check.name})",
    )


def _verdict(r: Regression, budget_id: str, name: str, detail: str) -> Verdict:
    return Verdict(
        budget_id=budget_id,
        name=name,
        status=_STATUS.get(r.outcome, "pass"),
        actual=r.current,
        limit=r.baseline,
        margin=None if r.delta is None else (-r.delta if r.higher_is_worse else r.delta),
        unit=r.unit,
        samples=r.current_n,
        detail=detail,
    )


def _where(r: Regression, groups: Sequence[tuple[str, Regression]]) -> str:
    if r.outcome != "regressed":
        return ""
    if not groups:
        return "; no page group regressed on its own"
    return "; page groups: " + ", ".join(f"{group} {g.change}" for group, g in groups)


async def deploy_verdicts(
    *,
    db: Database,
    site: Site,
    now_ms: int,
    watch_ms: int,
    thresholds: Thresholds,
    lab_thresholds: Thresholds | None = None,
) -> list[Verdict]:
    """The site's regression verdicts, or none when its latest deploy is older than ``watch_ms``
    (or there is none). A metric and device with no field values on either side gets none; with
    ``lab_thresholds``, its checks' verdicts follow (a check without runs on a side gets none)."""
    assert site.id is not None
    marker = await find_marker(db=db, site_id=site.id, ref="latest")
    if marker is None or not 0 < now_ms - marker.ts <= watch_ms:
        return []
    window = window_for(now_ms=now_ms, window_ms=WINDOW_MS, marker=marker)
    verdicts = []
    for device in DEVICES:
        for metric in FIELD_METRICS:
            base = await field_values(
                db=db, site_id=site.id, metric=metric, span=window.baseline, device=device
            )
            cur = await field_values(
                db=db, site_id=site.id, metric=metric, span=window.current, device=device
            )
            if not base and not cur:
                continue  # nothing measured there (a lab-only site, no INP yet): no verdict to keep
            result = await _compare(base, cur, metric=metric, window=window, thresholds=thresholds)
            groups: list[tuple[str, Regression]] = []
            if result.outcome == "regressed":
                groups = await _regressed_groups(
                    db=db, site_id=site.id, metric=metric, device=device, window=window, thresholds=thresholds
                )
            verdicts.append(regression_verdict(result, device=device, groups=groups))
    if lab_thresholds is not None:
        for check in await check_data.list_checks(db=db):
            if check.site_id == site.id:
                verdicts += await _check_verdicts(db, check, window, lab_thresholds)
    return verdicts


def watched_metrics(check: Check, newest: dict[str, Any] | None) -> list[str]:
    """What the watch compares for a check: see the module docstring."""
    if check.kind == "lighthouse":
        return list(LIGHTHOUSE_WATCHED)
    names = [s.get("name") for s in (newest or {}).get("steps") or [] if isinstance(s, dict)]
    steps = [f"step:{n}:LCP" for n in dict.fromkeys(names) if isinstance(n, str)]
    return ["duration", *[m for m in steps if lab_value(newest, m) is not None][:MAX_STEPS]]


async def _check_verdicts(
    db: Database, check: Check, window: Window, thresholds: Thresholds
) -> list[Verdict]:
    assert check.id is not None
    base = await lab_results(db=db, check_id=check.id, span=window.baseline)
    cur = await lab_results(db=db, check_id=check.id, span=window.current)
    if not base or not cur:
        return []
    verdicts = []
    for metric in watched_metrics(check, cur[-1]):
        r = lab_regression(
            [v for x in base if (v := lab_value(x, metric)) is not None],
            [v for x in cur if (v := lab_value(x, metric)) is not None],
            metric=metric,
            unit=unit_of(metric),
            since=window.since,
            thresholds=thresholds,
            higher_is_worse=not metric.startswith("score:"),
        )
        if r.baseline_n or r.current_n:
            verdicts.append(lab_verdict(r, check))
    return verdicts


async def _compare(
    base: list[float], cur: list[float], *, metric: str, window: Window, thresholds: Thresholds
) -> Regression:
    # Seconds of numpy for large samples (a bootstrap): off the event loop, which serves beacons.
    return await asyncio.to_thread(
        field_regression, base, cur, metric=metric, unit=unit_of(metric), since=window.since,
        thresholds=thresholds,
    )  # fmt: skip


async def _regressed_groups(
    *, db: Database, site_id: int, metric: str, device: str, window: Window, thresholds: Thresholds
) -> list[tuple[str, Regression]]:
    """The busiest page groups' own comparisons that regressed, the largest change first. Each
    at alpha / the number of groups (Bonferroni): ten groups at 0.05 would name a group that did
    not change after up to four deploys in ten."""
    found = []
    groups = await busiest_page_groups(
        db=db, site_id=site_id, metric=metric, span=window.current, device=device, most=MAX_GROUPS
    )
    each = replace(thresholds, alpha=thresholds.alpha / max(1, len(groups)))
    for group in groups:
        sides = [
            await field_values(
                db=db, site_id=site_id, metric=metric, span=span, device=device, page_group=group
            )
            for span in (window.baseline, window.current)
        ]
        result = await _compare(*sides, metric=metric, window=window, thresholds=each)
        if result.outcome == "regressed":
            found.append((group, result))
    return sorted(found, key=lambda gr: -abs(gr[1].delta or 0.0))
