"""The dashboard's built assets (static/ui/, written by app/ui/assets/build.mjs): fingerprinted
names from manifest.json, served from memory with their precompressed brotli/gzip siblings and
cached as immutable, since a changed file gets a new name."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

IMMUTABLE = "public, max-age=31536000, immutable"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class Asset:
    raw: bytes
    br: bytes | None
    gz: bytes | None
    media_type: str


@dataclass(frozen=True, slots=True)
class UiAssets:
    urls: dict[str, str]  # logical name ("charts.js") -> URL path of the fingerprinted file
    files: dict[str, Asset]  # fingerprinted file name -> contents

    @classmethod
    def load(cls, directory: Path) -> UiAssets:
        manifest_path = directory / "manifest.json"
        if not manifest_path.is_file():
            return cls(urls={}, files={})
        manifest: dict[str, str] = json.loads(manifest_path.read_text())
        files = {}
        for name in manifest.values():
            path = directory / name
            br, gz = path.with_name(name + ".br"), path.with_name(name + ".gz")
            files[name] = Asset(
                raw=path.read_bytes(),
                br=br.read_bytes() if br.is_file() else None,
                gz=gz.read_bytes() if gz.is_file() else None,
                media_type=_TYPES.get(path.suffix, "application/octet-stream"),
            )
        return cls(urls={k: f"/static/ui/{v}" for k, v in manifest.items()}, files=files)

    def url(self, logical: str) -> str:
        return self.urls.get(logical, "")


def ui_assets(request: Request[Any, Any, Any]) -> UiAssets:
    """Loaded once per app on first use (the factory does no I/O)."""
    state = request.app.state
    assets: UiAssets | None = state.get("ui_assets")
    if assets is None:
        assets = state["ui_assets"] = UiAssets.load(state.services.settings.static_path() / "ui")
    return assets


def _accepts(header: str, coding: str) -> bool:
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() == coding:
            q = params.replace(" ", "").removeprefix("q=")
            try:
                return not q or float(q) > 0
            except ValueError:
                return True
    return False


@get("/static/ui/{name:str}", include_in_schema=False)
async def ui_asset(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    asset = ui_assets(request).files.get(name)
    if asset is None:
        raise NotFoundException(f"no UI asset {name!r}; run `make ui`")
    headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
    accept = request.headers.get("accept-encoding", "")
    body = asset.raw
    if asset.br is not None and _accepts(accept, "br"):
        body, headers["Content-Encoding"] = asset.br, "br"
    elif asset.gz is not None and _accepts(accept, "gzip"):
        body, headers["Content-Encoding"] = asset.gz, "gzip"
    return Response(body, media_type=asset.media_type, headers=headers)
