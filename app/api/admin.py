"""Operator endpoints: slow queries, and running the periodic jobs now (after a bulk import,
or in tests)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.exceptions import NotFoundException

from app.api.deps import require_admin, services


@get("/api/v1/admin/slow-queries", guards=[require_admin], tags=["admin"])
async def slow_queries(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    """The latest queries over FIELDLAB_SLOW_QUERY_MS, newest first, with their plans."""
    entries = list(services(request).slow_queries.entries)
    return [
        {"at_ms": e.at_ms, "duration_ms": e.duration_ms, "statement": e.statement, "plan": e.plan}
        for e in reversed(entries)
    ]


@post("/api/v1/admin/jobs/{name:str}/run", guards=[require_admin], tags=["admin"], status_code=200)
async def run_job(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    """Run a periodic job (`rollups` or `retention`) now and wait for it."""
    jobs = services(request).jobs
    if name not in jobs:
        raise NotFoundException(f"no job {name!r}; jobs: {', '.join(sorted(jobs))}")
    job = jobs[name]
    await job.run_once()
    return {"job": name, "runs": job.runs, "error": job.last_error}
