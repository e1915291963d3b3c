"""Checks pages: the list with status and a duration sparkline, a check's charts over a range
(durations, steps, vitals, scores: the numbers the regressions API compares) and run history (with "Run
now" for admins), and a run's detail: step waterfall, lab vitals, resources, console
errors, screenshots, Lighthouse scores and artifact downloads. Read through app/checks.py, the
functions the checks API uses. A token limited to one site sees only that site's checks."""

from __future__ import annotations

import mimetypes
from typing import Any

from litestar import Request, get, post
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.response import File, Redirect, Template

from app import checks as check_data
from app.api.deps import services
from app.lab import STEP_LCP, check_charts, runs_in_range
from app.models import Check, CheckRun
from app.run_retention import expired_message, run_dir
from app.ui import data
from app.ui.auth import principal_of, require_admin_session
from app.ui.context import page, visible_sites
from probes.lighthouse import slow_host_hint

HISTORY = 50
SPARK_RUNS = 20


def _visible(request: Request[Any, Any, Any], check: Check) -> bool:
    principal = principal_of(request)
    return principal.site_id is None or check.site_id == principal.site_id


async def visible_check(request: Request[Any, Any, Any], check_id: int) -> Check:
    check = await check_data.get_check(db=services(request).db, check_id=check_id)
    if check is None:
        raise NotFoundException(f"no check with id {check_id}")
    if not _visible(request, check):
        raise PermissionDeniedException("this sign-in is limited to another site")
    return check


async def _run(request: Request[Any, Any, Any], run_id: int) -> tuple[Check, CheckRun]:
    run = await check_data.get_run(db=services(request).db, run_id=run_id)
    if run is None:
        raise NotFoundException(f"no run with id {run_id}")
    return await visible_check(request, run.check_id), run


def artifact_paths(run: CheckRun) -> list[str]:
    """Paths in the result are relative to the run's artifact directory."""
    result = run.result or {}
    paths: list[str] = list(result.get("artifacts") or [])
    paths += [p for p in (result.get("html_path"), result.get("lhr_path")) if p]
    paths += [
        s["screenshot"] for s in result.get("steps") or [] if isinstance(s, dict) and s.get("screenshot")
    ]
    return list(dict.fromkeys(paths))


def waterfall(run: CheckRun) -> list[dict[str, Any]]:
    """Each step's offset and width as shares of the run, for the bar chart."""
    result = run.result or {}
    steps = [s for s in result.get("steps") or [] if isinstance(s, dict)]
    # From the first step, not the run: browser start-up would squeeze every bar to the right.
    starts = [float(s["started_at"]) for s in steps if s.get("started_at")]
    start = min(starts) if starts else float(result.get("started_at") or 0)
    end = max(
        [float(s.get("started_at") or 0) + float(s.get("duration_ms") or 0) for s in steps] + [start + 1]
    )
    span = max(1.0, end - start)
    return [
        {**s, "left": max(0.0, (float(s.get("started_at") or start) - start) / span * 100),
         "width": float(s.get("duration_ms") or 0) / span * 100}
        for s in steps
    ]  # fmt: skip


@get("/checks", include_in_schema=False)
async def checks_list(request: Request[Any, Any, Any]) -> Template:
    return await checks_page(request)


async def checks_page(request: Request[Any, Any, Any], *, status_code: int = 200, **context: Any) -> Template:
    """The list; ``context`` carries the add-a-check form's values and error when it is shown again."""
    db = services(request).db
    rows = []
    for check in await check_data.list_checks(db=db):
        if check.id is None or not _visible(request, check):
            continue
        runs = await check_data.list_runs(db=db, check_id=check.id, limit=SPARK_RUNS)
        durations = [
            r.duration_ms for r in reversed(runs) if r.duration_ms is not None and r.status != "skipped"
        ]
        rows.append({"check": check, "last": runs[0] if runs else None, "durations": durations})
    context.setdefault("form", {"kind": "flow", "device": "desktop", "throttling": "none", "every": "15m",
                                "steps": "- goto: /", "runs": "3"})  # fmt: skip
    return await page(request, "checks.html", status_code=status_code, rows=rows, sites=await visible_sites(request),
                      kinds=check_data.KINDS, devices=check_data.DEVICES, throttlings=check_data.THROTTLING,
                      **context)  # fmt: skip


@get("/checks/{check_id:int}", include_in_schema=False)
async def check_detail(request: Request[Any, Any, Any], check_id: int) -> Template:
    return await check_page(request, await visible_check(request, check_id))


async def check_page(
    request: Request[Any, Any, Any], check: Check, *, status_code: int = 200, **context: Any
) -> Template:
    assert check.id is not None
    db = services(request).db
    runs = await check_data.list_runs(db=db, check_id=check.id, limit=HISTORY)
    params = {
        k: v
        for k, v in request.query_params.items()
        if k in ("range", "since", "until") and isinstance(v, str)
    }
    view = data.parse_view(params, now=data.now_ms())
    charted, total = await runs_in_range(db, check.id, view.since_ms, view.until_ms)
    x = [r.started_ms // 1000 for r in charted]
    span = [view.since_ms // 1000, view.until_ms // 1000]
    # The site's deploys as grey lines, as on the trends page: a step that changed with a deploy
    # shows it at a glance.
    deploys = [] if check.site_id is None else await data.deploys(services(request), check.site_id, view)
    chart = {"runs": {"x": x, "range": span, "charts": check_charts(check.kind, charted)},
             "markers": data.chart_markers(deploys)}  # fmt: skip
    return await page(request, "check.html", status_code=status_code, check=check, runs=runs, view=view,
                      ranges=data.RANGES, chart=chart, charts=bool(charted), charted=len(charted), in_range=total,
                      step_lcp=STEP_LCP, **context)  # fmt: skip


@post("/checks/{check_id:int}/run", include_in_schema=False, guards=[require_admin_session], status_code=303)
async def run_now(request: Request[Any, Any, Any], check_id: int) -> Redirect:
    await visible_check(request, check_id)
    run = await services(request).scheduler.run_now(check_id)
    return Redirect(f"/ui/runs/{run.id}", status_code=303)


@get("/runs/{run_id:int}", include_in_schema=False)
async def run_detail(request: Request[Any, Any, Any], run_id: int) -> Template:
    check, run = await _run(request, run_id)
    artifacts = artifact_paths(run)
    settings = services(request).settings
    expired = None
    if artifacts and not run_dir(settings.data_dir, run_id).is_dir():
        artifacts, expired = [], expired_message(run_id, settings.artifact_retention_days)
    result = run.result or {}
    host_hint = None
    if result.get("preset") == "mobile":
        host_hint = slow_host_hint(result.get("benchmark_index"), result.get("cpu_slowdown"))
    return await page(request, "run.html", check=check, run=run, result=result, steps=waterfall(run),
                      artifacts=artifacts, artifacts_expired=expired, host_hint=host_hint,
                      generated=run.trigger == check_data.GENERATED)  # fmt: skip


@get("/runs/{run_id:int}/artifacts/{path:path}", include_in_schema=False)
async def run_artifact(request: Request[Any, Any, Any], run_id: int, path: str) -> File:
    """A screenshot, trace or Lighthouse report of a run, for the signed-in browser (the API's
    artifact route wants a bearer token a browser does not send)."""
    _, run = await _run(request, run_id)
    wanted = path.lstrip("/")
    if wanted not in artifact_paths(run):
        raise NotFoundException(f"run {run_id} has no artifact {wanted!r}")
    settings = services(request).settings
    root = run_dir(settings.data_dir, run_id).resolve()
    if not root.is_dir():
        raise HTTPException(status_code=410, detail=expired_message(run_id, settings.artifact_retention_days))
    file = (root / wanted).resolve()
    if root not in file.parents or not file.is_file():
        raise NotFoundException(f"run {run_id} has no artifact {wanted!r}")
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    headers = {"Cache-Control": "private, max-age=86400, immutable", "X-Content-Type-Options": "nosniff"}
    if file.suffix == ".html":
        # Lighthouse reports run their own scripts: keep them away from the dashboard's origin.
        headers["Content-Security-Policy"] = "sandbox allow-scripts allow-popups"
    inline = file.suffix in (".png", ".jpg", ".jpeg", ".webp", ".html", ".json")
    return File(file, media_type="application/gzip" if file.name.endswith(".gz") else media_type,
                headers=headers, filename=file.name,
                content_disposition_type="inline" if inline else "attachment")  # fmt: skip
