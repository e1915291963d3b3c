"""The dashboard: server-rendered pages under /ui with a session sign-in, and its assets.

``router(settings)`` is registered by ``create_app``; ``template_config()`` goes to Litestar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Router, get
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.template.config import TemplateConfig

from app.config import Settings
from app.ui import (
    auth,
    budgets,
    check_forms,
    checks,
    format,
    health,
    markers,
    offline,
    pages,
    signin,
    site_settings,
    tokens,
    webhooks,
)
from app.ui import logs as log_pages
from app.ui.static import ui_asset

TEMPLATES = Path(__file__).resolve().parent / "templates"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(
        directory=TEMPLATES,
        engine=JinjaTemplateEngine,
        engine_callback=lambda engine: format.register(engine.engine),
    )


@get("/", include_in_schema=False)
async def home() -> Redirect:
    return Redirect("/ui/", status_code=302)


def router(settings: Settings) -> Router:
    signed_in = Router(
        path="/",
        route_handlers=[
            pages.overview,
            pages.add_site,
            pages.trends,
            pages.page_groups,
            pages.attribution,
            pages.compare,
            site_settings.settings_page,
            site_settings.save_settings,
            site_settings.delete_site,
            signin.logout,
            checks.checks_list,
            checks.check_detail,
            checks.run_now,
            check_forms.add_check,
            check_forms.set_enabled,
            check_forms.delete_check,
            checks.run_detail,
            checks.run_artifact,
            budgets.budgets,
            markers.add_marker,
            markers.delete_marker,
            webhooks.add_webhook,
            webhooks.test_webhook,
            webhooks.delete_webhook,
            health.health,
            tokens.tokens,
            tokens.add_token,
            tokens.revoke,
            log_pages.logs,
            log_pages.slow_queries,
        ],
        guards=[auth.require_session],
    )
    return Router(
        path="/ui",
        route_handlers=[
            signin.login_form,
            signin.login,
            offline.service_worker,
            offline.manifest,
            offline.icon,
            signed_in,
        ],
        middleware=auth.middleware(settings),
        exception_handlers={
            NotAuthorizedException: signin.not_signed_in,
            ValidationException: signin.error_page,
            HTTPException: signin.error_page,
        },
        include_in_schema=False,
    )


def handlers(settings: Settings) -> list[Any]:
    """Everything the dashboard adds to the app: its router, its assets, and / → /ui/."""
    return [router(settings), ui_asset, home, offline.favicon]
