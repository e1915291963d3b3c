"""Offline use: the web app manifest, an icon, and the service worker (app/ui/assets/sw.js,
filled in with the fingerprinted shell assets and a version that changes with them)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from litestar import Request, Response, get

from app.ui.static import ui_assets

SW_SOURCE = Path(__file__).resolve().parent / "assets" / "sw.js"
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" '
    'fill="#0b57d0"/><polyline points="8,44 22,30 32,38 46,18 56,26" fill="none" stroke="#fff" '
    'stroke-width="6" stroke-linecap="round" stroke-linejoin="round"/></svg>'
)
MANIFEST = {
    "name": "fieldlab",
    "short_name": "fieldlab",
    "description": "Frontend performance: real-user Core Web Vitals, checks and budgets.",
    "start_url": "/ui/",
    "scope": "/ui",
    "display": "standalone",
    "background_color": "#ffffff",
    "theme_color": "#0b57d0",
    "icons": [{"src": "/ui/icon.svg", "sizes": "any", "type": "image/svg+xml"}],
}


@get("/sw.js", include_in_schema=False)
async def service_worker(request: Request[Any, Any, Any]) -> Response[str]:
    assets = ui_assets(request)
    shell = sorted(assets.urls.values())
    version = hashlib.sha256("".join(shell).encode()).hexdigest()[:12]
    source = SW_SOURCE.read_text().replace("'__VERSION__'", json.dumps(version))
    source = source.replace("__SHELL__", json.dumps(shell))
    # The worker controls /ui itself (the overview), one level above its own folder.
    headers = {"Cache-Control": "no-cache", "Service-Worker-Allowed": "/ui"}
    return Response(source, media_type="text/javascript; charset=utf-8", headers=headers)


@get("/manifest.webmanifest", include_in_schema=False)
async def manifest() -> Response[bytes]:
    return Response(json.dumps(MANIFEST).encode(), media_type="application/manifest+json",
                    headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip


def _icon() -> Response[str]:
    return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


@get("/icon.svg", include_in_schema=False)
async def icon() -> Response[str]:
    return _icon()


@get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response[str]:
    """Browsers ask every origin for /favicon.ico: without it each page of this origin (the
    dashboard, the demo shop) logs a 404, which a flow of the demo shop reports as a console
    error and a failed request. Chrome sniffs the type, so the SVG icon does."""
    return _icon()
