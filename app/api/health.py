"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from app.api.deps import services
from app.observability import CONTENT_TYPE


@get("/healthz", tags=["health"], cache=False)
async def healthz() -> dict[str, str]:
    """200 while the process lives."""
    return {"status": "ok"}


@get("/readyz", tags=["health"])
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """200 only when beacons can be stored: the database answers and the writer runs."""
    svc = services(request)
    problems: list[str] = []
    try:
        await asyncio.wait_for(svc.db.ping(), timeout=2.0)
    except Exception as exc:
        problems.append(f"database: {type(exc).__name__}: {exc}"[:300])
    if not svc.writer.healthy:
        problems.append("writer: not running")
    elif svc.writer.depth >= svc.settings.queue_max:
        problems.append("writer: queue full")
    if problems:
        return Response(
            {"status": "unavailable", "problems": problems}, status_code=HTTP_503_SERVICE_UNAVAILABLE
        )
    return Response({"status": "ready", "queue_depth": svc.writer.depth})


@get("/metrics", tags=["health"], include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    return Response(services(request).metrics.exposition(), media_type=CONTENT_TYPE)
