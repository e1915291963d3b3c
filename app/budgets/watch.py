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
"""

from __future__ import annotations

import asyncio

from app.budgets.compare import FIELD_METRICS, field_values, unit_of, window_for
from app.budgets.regress import Regression, Thresholds, field_regression
from app.budgets.store import find_marker
from app.budgets.verdict import Status, Verdict
from app.db import Database
from app.models import Site

WINDOW_MS = 24 * 3_600_000  # the API's default window
DEVICES = ("mobile", "desktop")
_STATUS: dict[str, Status] = {"regressed": "warn", "insufficient-data": "insufficient-data"}


def regression_verdict(r: Regression, *, device: str) -> Verdict:
    """A comparison as a verdict: ``warn`` when regressed, ``pass`` when unchanged or improved.
    ``limit`` is the baseline p75 and ``margin`` the change, signed like a budget's (negative is
    worse)."""
    margin = None if r.delta is None else (-r.delta if r.higher_is_worse else r.delta)
    return Verdict(
        budget_id=f"regression:{r.metric}:{device}",
        name=f"{r.metric} p75 on {device} since the latest deploy",
        status=_STATUS.get(r.outcome, "pass"),
        actual=r.current,
        limit=r.baseline,
        margin=margin,
        unit=r.unit,
        samples=r.current_n,
        detail=f"{r.summary} ({device})",
    )


async def deploy_verdicts(
    *, db: Database, site: Site, now_ms: int, watch_ms: int, thresholds: Thresholds
) -> list[Verdict]:
    """The site's regression verdicts, or none when its latest deploy is older than ``watch_ms``
    (or there is none). A metric and device with no field values on either side gets none."""
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
            # Seconds of numpy for large samples (a bootstrap): off the event loop, which serves beacons.
            result = await asyncio.to_thread(
                field_regression, base, cur, metric=metric, unit=unit_of(metric), since=window.since,
                thresholds=thresholds,
            )  # fmt: skip
            verdicts.append(regression_verdict(result, device=device))
    return verdicts
