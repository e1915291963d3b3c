"""Synthetic field data for bench/field_bench.py: realistic web-vitals beacons, one metric each.

A *beacon* here is what web-vitals sends: one metric of one page view (so one ``measurement``
row). Page views are generated first and each reports the metrics a real one does: TTFB, FCP
and CLS almost always, LCP ~95 % (not on pages left before it settles), INP ~60 % (only with an
interaction) — which puts LCP at ~21 % of all beacons. Values are log-normal per metric, scaled
by device (mobile slower), connection, navigation type (bfcache/prerender near-instant) and page
group, with one shared page-view factor so a slow view is slow on every metric, and LCP ≥ FCP ≥
TTFB as in a browser. Traffic follows a day/night and a weekday/weekend curve.

Generation is pure and deterministic per chunk (seeded by the chunk index), so it runs in a
worker process and both backends receive identical data.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

HOUR = 3_600_000
DAY = 86_400_000

# (page group, example path prefix, share of page views, LCP factor)
PAGE_GROUPS: tuple[tuple[str, str, float, float], ...] = (
    ("/product/:id", "/product/", 0.28, 1.15),
    ("/category/:slug", "/category/", 0.15, 1.05),
    ("/", "/", 0.14, 1.0),
    ("/search", "/search", 0.10, 1.10),
    ("/blog/:slug", "/blog/", 0.08, 0.90),
    ("/cart", "/cart", 0.05, 0.85),
    ("/checkout", "/checkout", 0.04, 0.90),
    ("/account", "/account", 0.04, 0.80),
    ("/help/:topic", "/help/", 0.04, 0.85),
    ("/blog", "/blog", 0.03, 0.95),
    ("/stores", "/stores", 0.03, 1.20),
    ("/about", "/about", 0.02, 0.75),
)
# (device, share, factor on LCP/FCP/TTFB, factor on INP)
DEVICES: tuple[tuple[str, float, float, float], ...] = (
    ("mobile", 0.58, 1.30, 1.8),
    ("desktop", 0.37, 0.72, 0.6),
    ("tablet", 0.05, 1.05, 1.2),
)
# (navigation type, share, load factor): bfcache restores and prerenders are near-instant.
NAVS: tuple[tuple[str, float, float], ...] = (
    ("navigate", 0.80, 1.0),
    ("reload", 0.07, 0.9),
    ("back-forward-cache", 0.06, 0.15),
    ("back-forward", 0.04, 0.8),
    ("prerender", 0.03, 0.25),
)
# (effectiveType, share, load factor)
CONNECTIONS: tuple[tuple[str, float, float], ...] = (
    ("4g", 0.82, 1.0),
    ("3g", 0.10, 1.6),
    ("2g", 0.02, 2.6),
    ("unknown", 0.06, 1.0),
)
BROWSERS: tuple[tuple[str, float], ...] = (
    ("chrome", 0.64),
    ("safari", 0.21),
    ("edge", 0.08),
    ("firefox", 0.07),
)
LCP_ELEMENTS = ("img.hero", "h1", "img.product-photo", "div.banner", "p.lead")
INP_TARGETS = ("button.add-to-cart", "a.nav-link", "input#search", "button.menu", "div.carousel")
BOT_SHARE = 0.015  # crawlers/headless: stored, tagged, kept out of field figures

COLUMNS = ("site_id", "pageview_id", "metric", "value", "ts", "received_ms", "url", "page_group", "device",
           "nav", "connection", "browser", "is_bot", "attribution")  # fmt: skip
Row = tuple[int, str, str, float, int, int, str, str, str, str, str, str, bool, dict[str, str] | None]


@dataclass(frozen=True, slots=True)
class Plan:
    """N beacons spread over [start_ms, start_ms + chunks hours), one chunk per hour."""

    rows: int
    start_ms: int
    chunks: int
    site_id: int
    seed: int = 7

    def quotas(self) -> list[int]:
        """Rows per hour chunk, following a daily and weekly traffic curve, summing to ``rows``."""
        weights = []
        for i in range(self.chunks):
            mid = self.start_ms + i * HOUR + HOUR // 2
            hour_of_day = (mid % DAY) / HOUR
            weekday = (mid // DAY + 3) % 7  # 1970-01-01 was a Thursday; 5, 6 = Sat, Sun
            daily = 1.0 + 0.55 * math.cos(2 * math.pi * (hour_of_day - 15) / 24)
            weights.append(daily * (0.8 if weekday >= 5 else 1.0))
        total = sum(weights)
        exact = [self.rows * w / total for w in weights]
        quotas = [int(x) for x in exact]
        by_remainder = sorted(range(self.chunks), key=lambda i: exact[i] - quotas[i], reverse=True)
        for i in by_remainder[: self.rows - sum(quotas)]:
            quotas[i] += 1
        return quotas


_GROUP_SHARES = tuple(g[2] for g in PAGE_GROUPS)
_DEVICE_SHARES = tuple(d[1] for d in DEVICES)
_NAV_SHARES = tuple(n[1] for n in NAVS)
_CONNECTION_SHARES = tuple(c[1] for c in CONNECTIONS)
_BROWSER_SHARES = tuple(b[1] for b in BROWSERS)


def _pick(rng: random.Random, shares: tuple[float, ...]) -> int:
    r = rng.random()
    for i, share in enumerate(shares):
        r -= share
        if r <= 0:
            return i
    return len(shares) - 1


def generate_chunk(plan: Plan, index: int, quota: int) -> list[Row]:
    """The beacons of hour chunk ``index`` in time order (page-view ids are web-vitals-like
    ``v4-<ms>-<random>``, so they grow with time like real ones)."""
    rng = random.Random(plan.seed * 1_000_003 + index)
    chunk_start = plan.start_ms + index * HOUR
    views: list[list[Row]] = []
    made = 0
    while made < quota:
        ts = chunk_start + rng.randrange(HOUR)
        g = _pick(rng, _GROUP_SHARES)
        group, prefix, _, group_factor = PAGE_GROUPS[g]
        d = _pick(rng, _DEVICE_SHARES)
        device, _, load_factor, inp_factor = DEVICES[d]
        n = _pick(rng, _NAV_SHARES)
        nav, _, nav_factor = NAVS[n]
        c = _pick(rng, _CONNECTION_SHARES)
        connection, _, net_factor = CONNECTIONS[c]
        if device == "desktop" and connection in ("2g", "3g"):
            connection, net_factor = "4g", 1.0
        browser = BROWSERS[_pick(rng, _BROWSER_SHARES)][0]
        bot = rng.random() < BOT_SHARE
        path = prefix + (str(rng.randrange(5000)) if prefix.endswith("/") and prefix != "/" else "")
        url = "https://shop.example" + path
        pv_id = f"v4-{ts}-{rng.randrange(10**12, 9 * 10**12)}"
        view = rng.lognormvariate(0.0, 0.25)  # this page view's own slowness, on every metric
        load = load_factor * nav_factor * net_factor * view
        ttfb = 500 * 1.03 * load * rng.lognormvariate(0.0, 0.6)
        fcp = max(ttfb + 50, 1400 * 0.99 * load * rng.lognormvariate(0.0, 0.45))
        lcp = max(fcp, 2200 * 0.9 * load * group_factor * rng.lognormvariate(0.0, 0.5))
        metrics: list[tuple[str, float, dict[str, str] | None]] = [("TTFB", round(ttfb, 1), None)]
        if rng.random() < 0.99:
            metrics.append(("FCP", round(fcp, 1), None))
        if rng.random() < 0.95:
            attribution = {"element": rng.choice(LCP_ELEMENTS), "url": url}
            metrics.append(("LCP", round(lcp, 1), attribution))
        if rng.random() < 0.60:
            inp = 130 * inp_factor * view * rng.lognormvariate(0.0, 0.8)
            target = {"target": rng.choice(INP_TARGETS), "type": "pointer"}
            metrics.append(("INP", float(max(8, round(inp / 8) * 8)), target))
        # CLS: most page views shift nothing; the rest have a long tail.
        cls = 0.0 if rng.random() < 0.55 else round(0.04 * rng.lognormvariate(0.0, 1.1), 4)
        metrics.append(("CLS", cls, {"target": "div.banner"} if cls > 0.1 else None))
        metrics = metrics[: quota - made]
        made += len(metrics)
        # Metrics arrive over the page's life: TTFB/FCP/LCP early, INP/CLS when it is hidden.
        hidden = ts + int(rng.lognormvariate(10.0, 1.2))
        views.append(
            [
                (plan.site_id, pv_id, metric, value, ts, (ts + 3000 if metric in ("TTFB", "FCP", "LCP") else hidden),
                 url, group, device, nav, connection, browser, bot, attribution)
                for metric, value, attribution in metrics
            ]
        )  # fmt: skip
    views.sort(key=lambda v: v[0][4])
    return [row for view in views for row in view]


def metric_share(rows: list[Row]) -> dict[str, float]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[2]] = counts.get(row[2], 0) + 1
    return {m: round(n / len(rows), 4) for m, n in sorted(counts.items())}
