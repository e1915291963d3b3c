"""POST /api/v1/beacon — the hot path. Checks run cheapest first; the body is read (with the
size limit enforced while streaming) only after the key and origin are known to be good."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post, route
from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT
from litestar.types import Scope

from app.api.deps import Services, services
from app.api.openapi import BeaconOperation
from app.db import now_ms
from app.ingest.decode import BeaconRejected, Client, decode_beacon
from app.ingest.writer import QueueFull, WriterStopped
from app.sites import SiteEntry

ACCEPTED_TYPES = frozenset({"text/plain", "application/json"})


class BeaconError(HTTPException):
    """A refused beacon; ``reason`` labels the rejection metric."""

    def __init__(self, status_code: int, detail: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(detail=detail, status_code=status_code, headers=headers)
        self.reason = reason


def _unavailable(svc: Services, why: str) -> BeaconError:
    return BeaconError(503, why, "unavailable", headers={"Retry-After": str(svc.settings.retry_after_s)})


async def _site_for(svc: Services, key: str | None, origin: str) -> SiteEntry:
    if not key:
        raise BeaconError(400, "missing query parameter 'site' (the site's public key)", "no_key")
    entry = await svc.sites.get(key)
    if entry is None:
        raise BeaconError(403, "unknown site key", "unknown_site")
    if not origin:
        raise BeaconError(
            403, "missing Origin header; beacons must come from one of the site's origins", "origin"
        )
    if not entry.allows(origin):
        raise BeaconError(403, f"origin {origin} is not allowed for this site", "origin")
    return entry


def _cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


_READ_HEADERS = frozenset({b"content-type", b"origin", b"user-agent", b"referer"})


def _request_headers(scope: Scope) -> dict[bytes, str]:
    """The headers the beacon needs, in one pass over the raw list (``request.headers`` builds a
    multidict and is looked up per name). As there, names match in any case and the first of a
    repeated header counts."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        name = name.lower()
        if name in _READ_HEADERS and name not in found:
            found[name] = value.decode("latin-1")
    return found


@post(
    "/api/v1/beacon",
    status_code=HTTP_204_NO_CONTENT,
    summary="Receive a page-view beacon or web-vitals metrics",
    tags=["ingest"],
    operation_class=BeaconOperation,
)
async def beacon(
    request: Request[Any, Any, Any],
    site: str | None = Parameter(default=None, query="site", description="The site's public key."),
) -> Response[None]:
    svc = services(request)
    try:
        headers = _request_headers(request.scope)
        content_type = headers.get(b"content-type", "").split(";", 1)[0].strip().lower()
        if content_type not in ACCEPTED_TYPES:
            raise BeaconError(
                415,
                f"content type {content_type or '(none)'!r} not accepted; use text/plain or application/json",
                "content_type",
            )
        origin = headers.get(b"origin", "")
        entry = await _site_for(svc, site, origin)
        body = await request.body()  # raises 413 past request_max_body_size, chunked or not
        try:
            rows = decode_beacon(
                body,
                limits=svc.limits,
                site=entry.rules,
                client=Client(
                    user_agent=headers.get(b"user-agent", ""),
                    referer=headers.get(b"referer", ""),
                    origin=origin,
                ),
                now_ms=now_ms(),
            )
        except BeaconRejected as exc:
            raise BeaconError(400, str(exc), "malformed") from None
        if rows.measurements or rows.errors:
            try:
                # The writer fails the future with TimeoutError after commit_timeout_s (one timer
                # for all beacons; no wait_for/shield/timeout per request, each costs more).
                done = svc.writer.submit(rows, svc.settings.commit_timeout_s)
            except QueueFull:
                raise _unavailable(svc, "ingest queue is full; retry later") from None
            except WriterStopped:
                raise _unavailable(svc, "server is shutting down; retry later") from None
            try:
                await done
            except TimeoutError:
                raise _unavailable(svc, "database is slow to commit; retry later") from None
            except Exception:
                raise _unavailable(svc, "database unavailable; retry later") from None
    except BeaconError as exc:
        svc.metrics.beacons_rejected.labels(exc.reason).inc()
        raise
    except HTTPException as exc:
        svc.metrics.beacons_rejected.labels("too_large" if exc.status_code == 413 else "other").inc()
        raise
    return Response(None, status_code=HTTP_204_NO_CONTENT, headers=_cors(origin))


@route("/api/v1/beacon", http_method=["OPTIONS"], include_in_schema=False, status_code=HTTP_204_NO_CONTENT)
async def beacon_preflight(
    request: Request[Any, Any, Any], site: str | None = Parameter(default=None, query="site")
) -> Response[None]:
    """CORS preflight (fetch with application/json). Answered only for the site's origins."""
    svc = services(request)
    origin = request.headers.get("origin", "")
    await _site_for(svc, site, origin)
    return Response(
        None,
        status_code=HTTP_204_NO_CONTENT,
        headers={
            **_cors(origin),
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "content-type",
            "Access-Control-Max-Age": "86400",
        },
    )
