"""GET /fieldlab.js: the RUM snippet, precompressed once at start, with an ETag.

The URL is not fingerprinted (it is in site owners' HTML), so the cache lifetime is a day and
revalidation is cheap (304 on a matching ETag)."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import brotli
from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

from app.api.deps import services

CACHE_CONTROL = "public, max-age=86400, stale-while-revalidate=604800"


@dataclass(frozen=True, slots=True)
class StaticAsset:
    raw: bytes
    br: bytes
    gz: bytes
    etag: str

    @classmethod
    def load(cls, path: Path) -> StaticAsset | None:
        if not path.is_file():
            return None
        raw = path.read_bytes()
        return cls(
            raw=raw,
            br=brotli.compress(raw, quality=11),
            gz=gzip.compress(raw, compresslevel=9, mtime=0),
            etag='"' + hashlib.sha256(raw).hexdigest()[:20] + '"',
        )


def _accepts(accept_encoding: str, coding: str) -> bool:
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() == coding:
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


@get("/fieldlab.js", include_in_schema=False)
async def snippet(request: Request[Any, Any, Any]) -> Response[bytes]:
    asset: StaticAsset | None = services(request).snippet
    if asset is None:
        raise NotFoundException("fieldlab.js is not built; run `make install`")
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
        # Pages with Cross-Origin-Embedder-Policy may still load it from fieldlab's origin.
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=304, headers=headers)
    accept = request.headers.get("accept-encoding", "")
    body = asset.raw
    if _accepts(accept, "br"):
        body, headers["Content-Encoding"] = asset.br, "br"
    elif _accepts(accept, "gzip"):
        body, headers["Content-Encoding"] = asset.gz, "gzip"
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)
