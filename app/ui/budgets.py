"""Budgets and alerts: every budget's current alert state, one budget's status history, and the
webhook delivery log. Read through app/budgets/store.py, as the API does; like the API's
webhook routes it needs an admin sign-in (deliveries name webhook URLs and payloads), while the
API's budget-status and alerts also answer read tokens, within their site."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Template

from app.api.deps import services
from app.budgets import store
from app.checks import list_checks
from app.db import Database
from app.sites import list_sites
from app.ui.auth import require_admin_session
from app.ui.context import page

ORDER = {"failing": 0, "warning": 1, "ok": 2}


@get("/budgets", include_in_schema=False, guards=[require_admin_session])
async def budgets(
    request: Request[Any, Any, Any],
    # "scope" is Litestar's name for the ASGI scope, so the query parameter needs an alias.
    budget_scope: str | None = Parameter(query="scope", default=None),
    budget: str | None = None,
) -> Template:
    scope = budget_scope
    db = services(request).db
    states = sorted(await store.alert_states(db=db), key=lambda a: (ORDER.get(a.summary, 3), a.scope, a.name))
    history = []
    chosen = None
    if scope and budget:
        history = await store.status_history(db=db, scope=scope, budget_id=budget, limit=200)
        chosen = next((a for a in states if a.scope == scope and a.budget_id == budget), None)
    deliveries = await store.list_deliveries(db=db, limit=100)
    actuals = [h.actual for h in reversed(history) if h.actual is not None]
    labels = await scope_labels(db)
    return await page(request, "budgets.html", states=states, history=history, chosen=chosen, scope=scope,
                      budget=budget, deliveries=deliveries, actuals=actuals, labels=labels)  # fmt: skip


async def scope_labels(db: Database) -> dict[str, str]:
    """``site:3`` -> the site's name, ``check:7`` -> the check's: scopes are ids, people read names."""
    labels = {f"site:{s.id}": s.name for s in await list_sites(db=db)}
    labels |= {f"check:{c.id}": c.name for c in await list_checks(db=db)}
    return labels


async def open_alerts(request: Request[Any, Any, Any]) -> dict[str, int]:
    """scope -> number of budgets failing or warning (for the overview)."""
    counts: dict[str, int] = {}
    for state in await store.alert_states(db=services(request).db):
        if state.summary != "ok":
            counts[state.scope] = counts.get(state.scope, 0) + 1
    return counts
