"""The dashboard's check forms (admins): add a check, pause or resume one, delete one. The same
validation as ``POST``/``PATCH``/``DELETE /api/v1/checks`` (app/checks.py): errors name the
field, and a target the probes would refuse is refused here too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, post
from litestar.response import Redirect, Template

from app import checks as check_data
from app.api.deps import services
from app.configfile import ConfigError, parse_duration
from app.runner import target_policy
from app.sites import Conflict, InvalidInput
from app.ui.auth import require_admin_session
from app.ui.checks import check_page, checks_page, visible_check
from app.ui.context import unconfirmed

FORM = ("name", "kind", "target", "site_id", "every", "device", "throttling", "steps", "runs")


def check_values(form: dict[str, str]) -> dict[str, Any]:
    """The form as a check's fields. ``every`` is a duration (30s, 15m, 1h, 1d); empty: the
    check runs only when started by hand. Flow steps are the declarative YAML list."""
    values: dict[str, Any] = {k: form[k] for k in ("name", "kind", "target", "device", "throttling")}
    values["site_id"] = int(form["site_id"]) if form["site_id"].isdigit() else None
    if form["every"]:
        try:
            values["interval_s"] = parse_duration(form["every"], "every")
        except ConfigError as exc:
            raise InvalidInput(str(exc)) from None
    if form["kind"] == "flow":
        values["steps"] = form["steps"]
    else:
        if not form["runs"].isdigit():
            raise InvalidInput(f"runs: {form['runs']!r} is not a whole number")
        values["runs"] = int(form["runs"])
    return values


@post("/checks", include_in_schema=False, guards=[require_admin_session], status_code=303)
async def add_check(request: Request[Any, Any, Any]) -> Template | Redirect:
    raw = await request.form()
    form = {k: str(raw.get(k) or "").strip() for k in FORM}
    svc = services(request)
    try:
        check = await check_data.create_check(db=svc.db, values=check_values(form), flows_dir=Path(svc.settings.flows_dir),
                                              policy=target_policy(svc.settings))  # fmt: skip
    except (InvalidInput, Conflict) as exc:
        return await checks_page(request, status_code=400, form=form, error=str(exc))
    await svc.scheduler.sync()
    return Redirect(f"/ui/checks/{check.id}", status_code=303)


@post(
    "/checks/{check_id:int}/enabled", include_in_schema=False, guards=[require_admin_session], status_code=303
)
async def set_enabled(request: Request[Any, Any, Any], check_id: int) -> Redirect:
    """Pause or resume the schedule; runs started by hand still work while paused."""
    await visible_check(request, check_id)
    enabled = str((await request.form()).get("enabled") or "") == "1"
    svc = services(request)
    await check_data.update_check(db=svc.db, check_id=check_id, values={"enabled": enabled},
                                  flows_dir=Path(svc.settings.flows_dir), policy=None)  # fmt: skip
    await svc.scheduler.sync()
    return Redirect(f"/ui/checks/{check_id}", status_code=303)


@post(
    "/checks/{check_id:int}/delete", include_in_schema=False, guards=[require_admin_session], status_code=303
)
async def delete_check(request: Request[Any, Any, Any], check_id: int) -> Template | Redirect:
    """Deleting asks for the check's name, typed: its run history goes with it."""
    check = await visible_check(request, check_id)
    if why := await unconfirmed(request, "check", check.name):
        return await check_page(request, check, status_code=400, delete_error=why)
    svc = services(request)
    await check_data.delete_check(db=svc.db, check_id=check_id)
    await svc.scheduler.sync()
    return Redirect("/ui/checks", status_code=303)
