"""POST /api/v1/beacon — the hot path. Checks run cheapest first; the body is read (with the
size limit enforced while streaming) only after the key and origin are known to be good.

The endpoint is a Litestar ASGI route handler: routing, the router's rate limits, the app's
request-id/metrics middleware and its exception handlers (an ``HTTPException`` raised here
becomes the usual JSON error) all apply, but Litestar builds no ``Request``, signature model or
``Response`` for it. That machinery cost more CPU per beacon than everything fieldlab does with
the beacon short of the commit (bench/beacon_hotpath.py: 385 -> 290 us a beacon, ~20 % more
beacons/s in bench/beacon_bench.py), and the beacon needs none of it: one query parameter, four
headers, a body and an empty answer. Its OpenAPI entry is added by app/api/openapi.py.
"""

from __future__ import annotations

from functools import lru_cache
from typing import cast
from urllib.parse import parse_qsl

from litestar import asgi
from litestar.exceptions import HTTPException
from litestar.types import Receive, Scope, Send
from sqlalchemy.exc import IntegrityError

from app.api.deps import Services
from app.db import now_ms
from app.ingest.decode import BeaconRejected, Client, decode_beacon
from app.ingest.writer import QueueFull, WriterStopped
from app.sites import SiteEntry

PATH = "/api/v1/beacon"
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


_READ_HEADERS = frozenset({b"content-type", b"content-length", b"origin", b"user-agent", b"referer"})


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


@lru_cache(maxsize=4096)
def _site_param(query_string: bytes) -> str | None:
    """The ``site`` query parameter (the first, if repeated). Memoised: a site's beacons all
    carry the same query string; the cache is bounded, so odd strings cannot grow it."""
    for name, value in parse_qsl(query_string.decode("latin-1")):
        if name == "site":
            return value
    return None


def _too_large(limit: int) -> BeaconError:
    return BeaconError(413, f"beacon body over {limit} bytes (FIELDLAB_BEACON_MAX_BYTES)", "too_large")


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit`` bytes: from
    Content-Length before reading, and while streaming (chunked, or a wrong length)."""
    if declared:
        try:
            over = int(declared) > limit
        except ValueError:
            raise BeaconError(400, f"invalid Content-Length header {declared!r}", "malformed") from None
        if over:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BeaconError(400, "client disconnected before the body was complete", "disconnected")
        chunk = cast("bytes", message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send: Send, origin: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """204 with the CORS headers for ``origin`` (already checked against the site's origins)."""
    headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin"), *extra]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _post(svc: Services, scope: Scope, receive: Receive, send: Send) -> None:
    headers = _request_headers(scope)
    content_type = headers.get(b"content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        raise BeaconError(
            415,
            f"content type {content_type or '(none)'!r} not accepted; use text/plain or application/json",
            "content_type",
        )
    origin = headers.get(b"origin", "")
    key = _site_param(scope["query_string"])
    entry = await _site_for(svc, key, origin)
    body = await _read_body(receive, headers.get(b"content-length"), svc.settings.beacon_max_bytes)
    try:
        rows = decode_beacon(
            body,
            limits=svc.limits,
            site=entry.rules,
            client=Client(
                user_agent=headers.get(b"user-agent", ""), referer=headers.get(b"referer", ""), origin=origin
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
        except IntegrityError:
            # The one constraint a decoded beacon can break is its site's: the site was deleted
            # (by another worker, whose deletion this one's site cache has not seen yet).
            svc.sites.forget(key or "")
            raise BeaconError(403, "unknown site key", "unknown_site") from None
        except Exception:
            raise _unavailable(svc, "database unavailable; retry later") from None
    await _respond(send, origin)


_PREFLIGHT = (
    (b"access-control-allow-methods", b"POST"),
    (b"access-control-allow-headers", b"content-type"),
    (b"access-control-max-age", b"86400"),
)


async def _preflight(svc: Services, scope: Scope, send: Send) -> None:
    """CORS preflight (fetch with application/json). Answered only for the site's origins."""
    origin = _request_headers(scope).get(b"origin", "")
    await _site_for(svc, _site_param(scope["query_string"]), origin)
    await _respond(send, origin, _PREFLIGHT)


@asgi(PATH, copy_scope=False)
async def beacon(scope: Scope, receive: Receive, send: Send) -> None:
    """Receive a page-view beacon or web-vitals metrics (POST), or a CORS preflight (OPTIONS)."""
    svc: Services = scope["litestar_app"].state.services
    method: str = scope["method"]  # type: ignore[typeddict-item]  # an HTTP route: never a websocket
    try:
        if method == "POST":
            await _post(svc, scope, receive, send)
        elif method == "OPTIONS":
            await _preflight(svc, scope, send)
        else:
            raise BeaconError(
                405, f"method {method} not allowed; beacons are POSTed", "method", {"Allow": "OPTIONS, POST"}
            )
    except BeaconError as exc:
        if method == "POST":  # refused preflights and stray GETs are not refused beacons
            svc.metrics.beacons_rejected.labels(exc.reason).inc()
        raise
