"""Field rows written straight to the measurement table, for the regression tests: a metric's
values spread evenly over a period."""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa

from app.db import Database
from app.models import Measurement, table


async def insert_field(
    db: Database,
    site_id: int,
    metric: str,
    values: Any,
    start: int,
    end: int,
    device: str = "mobile",
    page_group: str = "/p/:id",
) -> None:
    """``values`` as one metric's rows, evenly spread over ``[start, end)``."""
    ts = np.linspace(start, end - 1, len(values)).astype(int)
    rows = [
        {
            "site_id": site_id,
            "pageview_id": f"pv-{device}-{page_group}-{start}-{i}",
            "metric": metric,
            "value": float(v),
            "ts": int(t),
            "received_ms": int(t),
            "url": "https://shop.example" + page_group.replace(":id", "1"),
            "page_group": page_group,
            "device": device,
            "nav": "navigate",
            "connection": "4g",
            "browser": "Chrome",
            "is_bot": False,
        }
        for i, (v, t) in enumerate(zip(values, ts, strict=True))
    ]
    async with db.write_conn() as conn:
        await conn.execute(sa.insert(table(Measurement)), rows)
