"""Deleting a site and everything that is its: field data, JS errors and log events, rollups,
deploy markers, its checks with their runs, the budget history and alert states of its scopes
(``site:ID``, ``check:ID``), webhooks limited to those scopes with their deliveries, and tokens
limited to the site. Nothing of it may outlive the site (ids are not reused since migration
0007, but a leftover row would still be data nobody can reach or delete).

The bulk tables are emptied in chunks first (SQLite's write lock is shared with beacon ingest),
then the rest and the site row go in one transaction, which also takes any rows another worker
stored meanwhile (its site cache may still accept the site's beacons for
FIELDLAB_SITE_CACHE_TTL_S). Its runs' artifacts on disk go last (those of a run that started
during the deletion go with the next retention run, app/run_retention.py).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.db import Database, delete_in_chunks
from app.models import (
    AlertState,
    ApiToken,
    BudgetStatus,
    Check,
    CheckRun,
    DeployMarker,
    DirtyHour,
    JsError,
    LogEvent,
    Measurement,
    Rollup,
    Site,
    Webhook,
    WebhookDelivery,
    table,
)
from app.run_retention import remove_run_dirs, run_ids_of_checks

# What the answer counts, in the order things are deleted.
COUNTED = ("measurement", "js_error", "log_event", "rollup", "deploy_marker", "check_run", "budget_status",
           "webhook_delivery", "alert_state", "webhook", "synthetic_check", "api_token")  # fmt: skip


async def _check_ids(conn: Any, site_id: int) -> list[int]:
    checks = table(Check)
    return [row[0] for row in await conn.execute(sa.select(checks.c.id).where(checks.c.site_id == site_id))]


def _owned(site_id: int, check_ids: list[int], scopes: list[str]) -> list[tuple[sa.Table, list[Any]]]:
    """Each table with an ``id`` key and what selects this site's rows in it."""
    owned: list[tuple[sa.Table, list[Any]]] = [
        (t, [t.c.site_id == site_id])
        for t in (table(Measurement), table(JsError), table(LogEvent), table(Rollup), table(DeployMarker))
    ]
    runs, statuses, deliveries = table(CheckRun), table(BudgetStatus), table(WebhookDelivery)
    owned.append((runs, [runs.c.check_id.in_(check_ids)]))
    owned.append((statuses, [statuses.c.scope.in_(scopes)]))
    owned.append((deliveries, [deliveries.c.scope.in_(scopes)]))
    return owned


async def delete_site(*, db: Database, site_id: int) -> dict[str, Any] | None:
    """Delete the site and what is its; ``{"id", "name", "key", "deleted": {table: rows}}``,
    or None if there is no such site."""
    site_t, checks_t = table(Site), table(Check)
    async with db.read_engine.connect() as conn:
        site = (
            await conn.execute(sa.select(site_t.c.name, site_t.c.key).where(site_t.c.id == site_id))
        ).first()
        if site is None:
            return None
        check_ids = await _check_ids(conn, site_id)
        run_ids = await run_ids_of_checks(conn, check_ids)
    scopes = [f"site:{site_id}", *(f"check:{c}" for c in check_ids)]
    deleted = dict.fromkeys(COUNTED, 0)
    for t, where in _owned(site_id, check_ids, scopes):
        deleted[t.name] += await delete_in_chunks(db, t, *where)

    hooks, deliveries = table(Webhook), table(WebhookDelivery)
    async with db.write_conn() as conn:
        for t, where in _owned(site_id, check_ids, scopes):  # rows stored since the chunks above
            deleted[t.name] += (await conn.execute(sa.delete(t).where(*where))).rowcount or 0
        hook_ids = sa.select(hooks.c.id).where(hooks.c.scope.in_(scopes)).scalar_subquery()
        result = await conn.execute(sa.delete(deliveries).where(deliveries.c.webhook_id.in_(hook_ids)))
        deleted["webhook_delivery"] += result.rowcount or 0
        alerts, dirty, tokens = table(AlertState), table(DirtyHour), table(ApiToken)
        rest: tuple[tuple[sa.Table, Any], ...] = (
            (alerts, alerts.c.scope.in_(scopes)),
            (hooks, hooks.c.scope.in_(scopes)),
            (dirty, dirty.c.site_id == site_id),
            (checks_t, checks_t.c.site_id == site_id),
            (tokens, tokens.c.site_id == site_id),
        )
        for t, cond in rest:
            rows = (await conn.execute(sa.delete(t).where(cond))).rowcount or 0
            if t.name in deleted:
                deleted[t.name] += rows
        await conn.execute(sa.delete(site_t).where(site_t.c.id == site_id))
    await remove_run_dirs(db.settings.data_dir, run_ids)
    return {"id": site_id, "name": site.name, "key": site.key, "deleted": deleted}


async def site_contents(*, db: Database, site_id: int) -> dict[str, int]:
    """How many rows of each kind ``delete_site`` would remove (for a confirmation prompt)."""
    async with db.read_engine.connect() as conn:
        check_ids = await _check_ids(conn, site_id)
        scopes = [f"site:{site_id}", *(f"check:{c}" for c in check_ids)]
        counts = {"synthetic_check": len(check_ids)}
        for t, where in _owned(site_id, check_ids, scopes):
            counts[t.name] = int(
                (await conn.execute(sa.select(sa.func.count()).select_from(t).where(*where))).scalar_one()
            )
    return counts
