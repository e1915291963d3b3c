"""A generated lab history for the demo's two checks, beside its generated field history, so the
trends page's lab points and the checks' charts have weeks to show from the first minute rather
than the one run made at start.

The results have the shapes the probes write (probes.results and probes.lighthouse dataclasses)
with numbers of the order the demo shop really gets on a loopback run; the product page's LCP
steps up after the latest generated deploy (its new product photo), as it does in the field
history. Nothing ran, so these runs have trigger ``demo`` (app.checks.GENERATED), no screenshots,
traces or reports, and are written once: checks that already have runs are left alone. The
scheduler counts a check whose runs are all generated as never run, so ``make run`` still runs
both checks at once.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from sqlmodel import col, select

from app.checks import GENERATED
from app.db import Database, now_ms
from app.demo.history import DAYS, HOUR_MS, LATEST_DEPLOY_H
from app.models import Check, CheckRun
from probes.collect import Resources
from probes.lighthouse import LighthouseResult, LighthouseRun
from probes.results import FlowResult, StepResult
from probes.vitals import Navigation

EVERY_H = {"flow": 2, "lighthouse": 6}


def _around(rng: random.Random, median: float, sigma: float = 0.12) -> float:
    return round(rng.lognormvariate(math.log(median), sigma), 1)


def flow_result(rng: random.Random, *, base: str, ts: int, regressed: bool) -> FlowResult:
    """The demo flow (probes/examples/demo_shop.py): home, product, add to cart."""
    page = Resources()
    page.add("document", 840, None)
    page.add("script", 2865, None)
    home = Navigation(url=f"{base}/demo/", kind="navigation",
                      vitals={"TTFB": _around(rng, 18), "FCP": (fcp := _around(rng, 90)), "LCP": fcp, "CLS": 0.0})  # fmt: skip
    product_lcp = _around(rng, 150 if regressed else 85)
    product = Navigation(url=f"{base}/demo/product/1", kind="navigation",
                         vitals={"TTFB": _around(rng, 22), "FCP": _around(rng, 80), "LCP": product_lcp, "CLS": 0.0239})  # fmt: skip
    cart = Navigation(
        url=f"{base}/demo/product/1", kind="timespan", vitals={"INP": _around(rng, 180)}, interactions=1
    )
    steps = [
        StepResult(
            name="home",
            started_at=ts + 1500,
            duration_ms=_around(rng, 290),
            navigations=[home],
            resources=page,
        ),
        StepResult(
            name="product", started_at=ts + 1800, duration_ms=_around(rng, 1040, 0.05), navigations=[product]
        ),
        StepResult(
            name="add to cart", started_at=ts + 2850, duration_ms=_around(rng, 240), navigations=[cart]
        ),
    ]
    return FlowResult(status="passed", started_at=ts, base_url=base, device="desktop", throttling="none",
                      duration_ms=_around(rng, 3300, 0.06), attempts=1, steps=steps)  # fmt: skip


def audit_result(rng: random.Random, *, base: str, ts: int) -> LighthouseResult:
    """The demo's mobile Lighthouse audit of /demo/: three runs, the representative one kept."""
    fcp = _around(rng, 640, 0.05)
    runs = [LighthouseRun(index=i, duration_ms=_around(rng, 11000, 0.08), fcp=fcp, interactive=fcp + 180,
                          benchmark_index=_around(rng, 2400, 0.1)) for i in range(3)]  # fmt: skip
    return LighthouseResult(
        status="passed", url=f"{base}/demo/", preset="mobile", started_at=ts, duration_ms=sum(r.duration_ms for r in runs),
        runs=runs, representative=1, final_url=f"{base}/demo/", lighthouse_version="12.2.3", cpu_slowdown=4.0,
        scores={"performance": 1.0 if fcp < 700 else 0.99, "accessibility": 1.0, "best-practices": 1.0, "seo": 0.9},
        metrics={"first-contentful-paint": fcp, "largest-contentful-paint": fcp + 180, "total-blocking-time": 0.0,
                 "cumulative-layout-shift": 0.0, "speed-index": fcp, "interactive": fcp + 180,
                 "server-response-time": _around(rng, 7)},
        benchmark_index=runs[1].benchmark_index,
    )  # fmt: skip


async def seed_lab_history(*, db: Database, checks: Sequence[Check], base: str, seed: int = 11) -> int:
    """Write the generated runs of ``checks`` (the demo's flow and audit); how many (0: they
    already have runs)."""
    ids = [c.id for c in checks if c.id is not None]
    async with db.read() as session:
        if (await session.exec(select(CheckRun.id).where(col(CheckRun.check_id).in_(ids)).limit(1))).first():
            return 0
    rng = random.Random(seed)  # made-up numbers, not secrets
    now = now_ms()
    latest_deploy = now - LATEST_DEPLOY_H * HOUR_MS
    runs = []
    for check in checks:
        every = EVERY_H.get(check.kind)
        if check.id is None or every is None:
            continue
        for hours_ago in range(DAYS * 24, 0, -every):
            ts = now - hours_ago * HOUR_MS
            if check.kind == "flow":
                result = flow_result(rng, base=base, ts=ts, regressed=ts >= latest_deploy).to_dict()
            else:
                result = audit_result(rng, base=base, ts=ts).to_dict()
            runs.append(CheckRun(check_id=check.id, status="passed", trigger=GENERATED, started_ms=ts,
                                 finished_ms=ts + int(result["duration_ms"]), duration_ms=result["duration_ms"],
                                 result=result))  # fmt: skip
    async with db.write() as session:
        session.add_all(runs)
    return len(runs)
