"""The dashboard's webhook forms (admins), on the Budgets & alerts page: add a webhook, send it a
test notification, delete it. The same store functions and validation as the webhook API."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template

from app.api.budgets import budget_service
from app.api.deps import services
from app.budgets import store
from app.sites import InvalidInput
from app.ui.auth import require_admin_session
from app.ui.budgets import budgets_page

FORM = ("name", "url", "format", "scope", "secret")


@post("/webhooks", include_in_schema=False, guards=[require_admin_session], status_code=303)
async def add_webhook(request: Request[Any, Any, Any]) -> Template | Redirect:
    raw = await request.form()
    form = {k: str(raw.get(k) or "").strip() for k in FORM}
    try:
        await store.create_webhook(db=services(request).db, name=form["name"], url=form["url"], fmt=form["format"],
                                   scope=form["scope"], secret=form["secret"])  # fmt: skip
    except InvalidInput as exc:
        form["secret"] = ""  # not sent back into the page
        return await budgets_page(request, None, None, status_code=400, form=form, webhook_error=str(exc))
    return Redirect("/ui/budgets#webhooks", status_code=303)


@post(
    "/webhooks/{webhook_id:int}/test",
    include_in_schema=False,
    guards=[require_admin_session],
    status_code=303,
)
async def test_webhook(request: Request[Any, Any, Any], webhook_id: int) -> Redirect:
    """Sent now; its outcome is the newest line of the alert log the page shows."""
    hook = await store.get_webhook(db=services(request).db, webhook_id=webhook_id)
    if hook is None:
        raise NotFoundException(f"no webhook with id {webhook_id}")
    await budget_service(request).send_test(hook)
    return Redirect("/ui/budgets#deliveries", status_code=303)


@post(
    "/webhooks/{webhook_id:int}/delete",
    include_in_schema=False,
    guards=[require_admin_session],
    status_code=303,
)
async def delete_webhook(request: Request[Any, Any, Any], webhook_id: int) -> Redirect:
    await store.delete_webhook(db=services(request).db, webhook_id=webhook_id)
    return Redirect("/ui/budgets#webhooks", status_code=303)
