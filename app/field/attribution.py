"""Attribution top-N: which LCP elements and resources, INP targets and scripts, and CLS
sources account for the page views in a range, with each item's count and p75.

Read from raw rows (attribution is per page view and unbounded in variety, so it is not rolled
up); it therefore covers the raw retention window (FIELDLAB_RAW_RETENTION_DAYS).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from app.db import Database
from app.field.query import Scope, _raw_where
from app.field.rollups import M
from app.field.stats import percentile

UNKNOWN = "(unknown)"
NO_RESOURCE = "(no resource: text)"  # an LCP without a url is a text block: nothing to load
# metric -> {by: attribution key}; "script" reads the Long Animation Frame list instead.
BY: dict[str, dict[str, str]] = {
    "LCP": {"element": "element", "url": "url"},
    "INP": {"target": "target", "script": "loaf", "type": "type"},
    "CLS": {"target": "target"},
}
DEFAULT_BY = {"LCP": "element", "INP": "target", "CLS": "target"}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme else ""


def _items(attr: dict[str, Any], key: str, page_url: str) -> Iterator[tuple[str, bool]]:
    """(item, cross_origin) pairs one page view contributes."""
    if key != "loaf":
        value = attr.get(key)
        if value not in (None, ""):
            yield str(value), False
        elif key == "url" and attr.get("element"):
            yield NO_RESOURCE, False
        else:
            yield UNKNOWN, False
        return
    scripts = attr.get("loaf") or []
    seen: set[str] = set()
    for script in scripts if isinstance(scripts, list) else []:
        src = str(script.get("src") or "") if isinstance(script, dict) else ""
        if src in seen:
            continue
        seen.add(src)
        # Browsers name no source for some scripts (eval, extensions, opaque cross-origin):
        # they get their own bucket instead of vanishing.
        yield (src or UNKNOWN), bool(src) and _origin(src) != _origin(page_url)
    if not seen:
        yield "(no script attributed)", False


async def top(*, db: Database, scope: Scope, by: str, limit: int) -> list[dict[str, Any]]:
    key = BY[scope.metric][by]
    query = sa.select(M.value, M.attribution, M.url).where(*_raw_where(scope, scope.since_ms, scope.until_ms))
    values: dict[str, list[float]] = {}
    cross: dict[str, bool] = {}
    async with db.read_engine.connect() as conn:
        for value, attr, url in await conn.execute(query):
            if attr is None:
                attr = {}
            elif isinstance(attr, str):  # SQLite returns JSON text from some drivers
                attr = json.loads(attr)
            for item, is_cross in _items(attr, key, url):
                values.setdefault(item, []).append(value)
                cross[item] = is_cross
    ranked = sorted(values.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
    out = []
    for item, vals in ranked:
        p75 = percentile(sorted(vals), 0.75)
        entry: dict[str, Any] = {
            "item": item,
            "count": len(vals),
            "p75": round(p75, 4 if scope.metric == "CLS" else 1),
        }
        if key == "loaf":
            entry["cross_origin"] = cross[item]
        out.append(entry)
    return out
