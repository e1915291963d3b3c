"""A generated field history for the demo site, so `make run` opens on trends rather than on
empty charts: DAYS days of page views of the demo's two page groups (home, product), on mobile
and desktop, with a daily rhythm; two deploy markers; and a regression after the latest one
(product-page LCP on mobile +45 %, a TypeError from a new script) for the compare and
regression views and the error search to find.

The page views are beacons in fieldlab.js's own format and go through the real decoding,
normalisation and group-commit writer. Seeded once: a demo site that already has field data
(generated or from real clicks) is left alone.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlmodel import select

from app.budgets.store import add_marker
from app.db import Database, now_ms
from app.ingest.decode import Client, Limits, Rows, SiteRules, decode_beacon
from app.ingest.writer import GroupCommitWriter
from app.models import Measurement
from app.observability import Metrics

DAYS = 14
HOUR_MS = 3_600_000
LATEST_DEPLOY_H = 30  # hours ago: a full day after it, and within the deploy watch (48 h)
EARLIER_DEPLOY_H = 9 * 24
PAGE_VIEWS_PER_HOUR = 24  # on average; the daily rhythm swings it from about 10 to 38
UA = {
    "mobile": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/130.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1",
    ),
    "desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/130.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:131.0) Gecko/20100101 Firefox/131.0",
    ),
}
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Seeded:
    page_views: int
    markers: int


def _lognormal(rng: random.Random, median: float, sigma: float = 0.45) -> float:
    return rng.lognormvariate(math.log(median), sigma)


def page_view(rng: random.Random, *, base: str, ts: int, pv_id: str, regressed: bool) -> tuple[bytes, str]:
    """One page view's beacon body and its user agent."""
    device = "mobile" if rng.random() < 0.6 else "desktop"
    mobile = device == "mobile"
    product = rng.random() < 0.55
    url = f"{base}/demo/product/{rng.randint(1, 40)}" if product else f"{base}/demo/"
    ttfb = _lognormal(rng, 320 if mobile else 170)
    fcp = ttfb + _lognormal(rng, 1100 if mobile else 520)
    slower = 1.45 if regressed and product and mobile else 1.0
    lcp = fcp + _lognormal(rng, (850 if mobile else 280) * slower)
    metrics: dict[str, float] = {"TTFB": round(ttfb, 1), "FCP": round(fcp, 1), "LCP": round(lcp, 1)}
    metrics["CLS"] = round(_lognormal(rng, 0.11, 0.35) if product else _lognormal(rng, 0.01, 0.8), 4)
    lcp_element = "main > div.photo" if product else "main > h1"
    attribution: dict[str, Any] = {
        "LCP": {"element": lcp_element, "ttfb": round(ttfb, 1), "renderDelay": round(lcp - fcp, 1)},
        "CLS": {"target": "main > p" if product else "header"},
    }
    if rng.random() < 0.6:  # not every visitor interacts
        add_to_cart = product and rng.random() < 0.7
        metrics["INP"] = round(
            _lognormal(rng, (390 if mobile else 230) if add_to_cart else (140 if mobile else 60))
        )
        attribution["INP"] = {
            "target": "button#add" if add_to_cart else "header > a",
            "type": "pointer",
            "loaf": [
                {"src": f"{base}/demo/{'cart' if add_to_cart else 'app'}.js", "dur": metrics["INP"] * 0.8}
            ],
        }
    errors = []
    if regressed and product and rng.random() < 0.04:
        errors.append({
            "msg": "TypeError: Cannot read properties of undefined (reading 'price')",
            "src": f"{base}/demo/cart.js", "line": 42, "col": 17,
            "stack": f"TypeError: Cannot read properties of undefined (reading 'price')\n    at addToCart ({base}/demo/cart.js:42:17)",
        })  # fmt: skip
    body = {"id": pv_id, "url": url, "ts": ts, "nav": "navigate", "metrics": metrics,
            "attribution": attribution, "context": {"vw": 390 if mobile else 1440, "vh": 844 if mobile else 900},
            "errors": errors}  # fmt: skip
    return _encode(body), rng.choice(UA[device])


async def has_field_data(*, db: Database, site_id: int) -> bool:
    query = select(Measurement.site_id).where(Measurement.site_id == site_id).limit(1)
    async with db.read() as session:
        return (await session.exec(query)).first() is not None


async def seed_history(
    *, db: Database, site_id: int, base: str, page_groups: tuple[dict[str, str], ...], seed: int = 7
) -> Seeded | None:
    """Write the generated history (None: the site already has field data). ``base`` is the
    origin the demo is served from, as its real beacons' URLs would name it."""
    if await has_field_data(db=db, site_id=site_id):
        return None
    rng = random.Random(seed)  # made-up page views, not secrets
    now = now_ms()
    start = now - now % HOUR_MS - DAYS * 24 * HOUR_MS
    latest_deploy = now - LATEST_DEPLOY_H * HOUR_MS
    rules = SiteRules(id=site_id, page_groups=page_groups)
    limits = Limits(max_age_ms=(DAYS + 1) * 86_400_000)
    batches: list[Rows] = []
    for hour in range(DAYS * 24):
        hour_start = start + hour * HOUR_MS
        rhythm = 1 + 0.6 * math.sin(2 * math.pi * ((hour % 24) - 9) / 24)  # busiest mid-afternoon UTC
        for i in range(max(1, round(rng.gauss(PAGE_VIEWS_PER_HOUR * rhythm, 2)))):
            ts = hour_start + rng.randrange(HOUR_MS)
            if ts >= now:
                continue
            body, ua = page_view(
                rng, base=base, ts=ts, pv_id=f"demo-{hour}-{i}", regressed=ts >= latest_deploy
            )
            batches.append(decode_beacon(body, limits=limits, site=rules, client=Client(user_agent=ua, origin=base),
                                         now_ms=now))  # fmt: skip
    writer = GroupCommitWriter(db, Metrics(), queue_max=len(batches), batch_max_rows=5000, batch_max_wait_s=0)
    writer.start()
    try:
        for done in [writer.submit(rows) for rows in batches]:
            await done
    finally:
        await writer.stop()
    for hours_ago, commit, message in [
        (EARLIER_DEPLOY_H, "4f1c2e7", "demo: smaller fonts"),
        (LATEST_DEPLOY_H, "9b3d0a1", "demo: new product photo and cart script"),
    ]:
        await add_marker(db=db, site_id=site_id, commit=commit, branch="main", message=message,
                         ts_ms=now - hours_ago * HOUR_MS)  # fmt: skip
    return Seeded(page_views=len(batches), markers=2)
