"""Budgets and alerts: every budget's current alert state, one budget's status history, and the
webhook delivery log. Read through app/budgets/store.py, as the API does, and shown to whom the
API would show it: a read sign-in sees the states and histories of its site(s) (not fieldlab's
own health), and only an admin the delivery log (it names webhooks, as the webhook routes do)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.exceptions import PermissionDeniedException
from litestar.params import Parameter
from litestar.response import Template

from app.api.deps import services
from app.budgets import store
from app.checks import list_checks
from app.db import Database
from app.sites import list_sites
from app.ui.auth import principal_of, require_session
from app.ui.context import page

ORDER = {"failing": 0, "warning": 1, "ok": 2}


@get("/budgets", include_in_schema=False, guards=[require_session])
async def budgets(
    request: Request[Any, Any, Any],
    # "scope" is Litestar's name for the ASGI scope, so the query parameter needs an alias.
    budget_scope: str | None = Parameter(query="scope", default=None),
    budget: str | None = None,
) -> Template:
    return await budgets_page(request, budget_scope, budget)


async def budgets_page(
    request: Request[Any, Any, Any],
    scope: str | None,
    budget: str | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> Template:
    """``context``: the add-a-webhook form's values and error when it is shown again."""
    db = services(request).db
    principal = principal_of(request)
    states = await store.visible_states(db=db, principal=principal, states=await store.alert_states(db=db))
    states.sort(key=lambda a: (ORDER.get(a.summary, 3), a.scope, a.name))
    history = []
    chosen = None
    if scope and budget:
        if principal.scope != "admin" and scope not in {a.scope for a in states}:
            raise PermissionDeniedException(f"scope {scope!r}: not one this sign-in may see")
        history = await store.status_history(db=db, scope=scope, budget_id=budget, limit=200)
        chosen = next((a for a in states if a.scope == scope and a.budget_id == budget), None)
    admin = principal.scope == "admin"
    deliveries = await store.list_deliveries(db=db, limit=100) if admin else []
    hooks = await store.list_webhooks(db=db) if admin else []
    actuals = [h.actual for h in reversed(history) if h.actual is not None]
    labels = await scope_labels(db)
    latest = await store.latest_verdicts(db=db, states=states)
    context.setdefault("form", {"format": "slack"})
    return await page(request, "budgets.html", status_code=status_code, states=states, latest=latest,
                      history=history, chosen=chosen, scope=scope, budget=budget, deliveries=deliveries,
                      actuals=actuals, labels=labels, hooks=hooks, **context)  # fmt: skip


async def scope_labels(db: Database) -> dict[str, str]:
    """``site:3`` -> the site's name, ``check:7`` -> the check's: scopes are ids, people read names."""
    labels = {f"site:{s.id}": s.name for s in await list_sites(db=db)}
    labels |= {f"check:{c.id}": c.name for c in await list_checks(db=db)}
    return labels


async def open_alerts(request: Request[Any, Any, Any]) -> dict[str, int]:
    """scope -> number of budgets failing or warning (for the overview), of those this sign-in
    may see."""
    db = services(request).db
    counts: dict[str, int] = {}
    states = await store.visible_states(
        db=db, principal=principal_of(request), states=await store.alert_states(db=db)
    )
    for state in states:
        if state.summary != "ok":
            counts[state.scope] = counts.get(state.scope, 0) + 1
    return counts
