"""Synthetic checks API: CRUD, run now, results and artifacts."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, delete, get, patch, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import Parameter
from litestar.response import File
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from app import checks as check_data
from app.api.deps import require_admin, require_read, services
from app.models import Check, CheckRun
from app.run_retention import expired_message, run_dir
from app.runner import target_policy
from app.sites import Conflict, InvalidInput
from probes.safety import TargetPolicy

# Steps as a JSON list, or YAML text (what a check kept in a repository looks like).
Steps = list[dict[str, Any]] | str


class CheckIn(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """Unknown fields are refused: there is no field that takes code, and a typo must not be
    silently dropped."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    kind: Literal["flow", "lighthouse"]
    target: str
    interval_s: int | None = None
    cron: str | None = None
    jitter_s: int = 0
    device: Literal["mobile", "desktop"] = "desktop"
    throttling: Literal["none", "mobile-slow-4g", "desktop-dense-4g"] = "none"
    steps: Steps | None = None
    flow_file: str | None = None
    runs: int = 3
    site_id: int | None = None
    enabled: bool = True


class CheckPatch(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """Only the fields given change (`"cron": null` clears a cron schedule)."""

    target: str | msgspec.UnsetType = msgspec.UNSET
    interval_s: int | msgspec.UnsetType | None = msgspec.UNSET
    cron: str | msgspec.UnsetType | None = msgspec.UNSET
    jitter_s: int | msgspec.UnsetType = msgspec.UNSET
    device: Literal["mobile", "desktop"] | msgspec.UnsetType = msgspec.UNSET
    throttling: Literal["none", "mobile-slow-4g", "desktop-dense-4g"] | msgspec.UnsetType = msgspec.UNSET
    steps: Steps | msgspec.UnsetType | None = msgspec.UNSET
    flow_file: str | msgspec.UnsetType | None = msgspec.UNSET
    runs: int | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


def check_out(check: Check, last: CheckRun | None = None) -> dict[str, Any]:
    out = check.model_dump(exclude={"created_ms"})
    out["last_run"] = run_out(last, brief=True) if last else None
    return out


def run_out(run: CheckRun, *, brief: bool = False, data_dir: str | None = None) -> dict[str, Any]:
    """``data_dir`` given: the artifacts are looked for on disk, and a run whose artifacts were
    removed (FIELDLAB_ARTIFACT_RETENTION_DAYS) says so instead of listing dead links."""
    out = run.model_dump(exclude={"result"} if brief else set())
    if not brief:
        urls = artifact_urls(run)
        expired = (
            bool(urls)
            and data_dir is not None
            and run.id is not None
            and not run_dir(data_dir, run.id).is_dir()
        )
        out["artifact_urls"] = [] if expired else urls
        out["artifacts_expired"] = expired
    return out


def artifact_urls(run: CheckRun) -> list[str]:
    """Where the run's screenshots, traces and reports are served (paths in ``result`` are
    relative to the run)."""
    result = run.result or {}
    paths: list[str] = list(result.get("artifacts") or [])
    paths += [p for p in (result.get("html_path"), result.get("lhr_path")) if p]
    paths += list(result.get("lhr_paths") or [])
    return [f"/api/v1/runs/{run.id}/artifacts/{p}" for p in dict.fromkeys(paths)]


def _bad(exc: Exception) -> HTTPException:
    return HTTPException(status_code=409 if isinstance(exc, Conflict) else 400, detail=str(exc))


def _flows_dir(request: Request[Any, Any, Any]) -> Path:
    return Path(services(request).settings.flows_dir)


def _policy(request: Request[Any, Any, Any]) -> TargetPolicy:
    return target_policy(services(request).settings)


async def _check(request: Request[Any, Any, Any], check_id: int) -> Check:
    check = await check_data.get_check(db=services(request).db, check_id=check_id)
    if check is None:
        raise NotFoundException(f"no check with id {check_id}")
    return check


@post("/api/v1/checks", guards=[require_admin], status_code=HTTP_201_CREATED, tags=["checks"])
async def create_check(request: Request[Any, Any, Any], data: CheckIn) -> dict[str, Any]:
    """Create a check: a declarative flow (`steps`), a flow file from the flows directory
    (`flow_file`), or a Lighthouse audit, with `interval_s` or `cron` (omit both: run-now only)."""
    svc = services(request)
    try:
        check = await check_data.create_check(
            db=svc.db,
            values=msgspec.structs.asdict(data),
            flows_dir=_flows_dir(request),
            policy=_policy(request),
        )
    except (InvalidInput, Conflict) as exc:
        raise _bad(exc) from None
    await svc.scheduler.sync()
    return check_out(check)


@get("/api/v1/checks", guards=[require_read], tags=["checks"])
async def list_checks(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    svc = services(request)
    out = []
    for check in await check_data.list_checks(db=svc.db):
        assert check.id is not None
        last = await check_data.list_runs(db=svc.db, check_id=check.id, limit=1)
        out.append(check_out(check, last[0] if last else None))
    return out


@get("/api/v1/checks/{check_id:int}", guards=[require_read], tags=["checks"])
async def get_check(request: Request[Any, Any, Any], check_id: int) -> dict[str, Any]:
    return check_out(await _check(request, check_id))


@patch("/api/v1/checks/{check_id:int}", guards=[require_admin], tags=["checks"])
async def update_check(request: Request[Any, Any, Any], check_id: int, data: CheckPatch) -> dict[str, Any]:
    svc = services(request)
    try:
        given = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        check = await check_data.update_check(db=svc.db, check_id=check_id, values=given,
                                              flows_dir=_flows_dir(request), policy=_policy(request))  # fmt: skip
    except InvalidInput as exc:
        raise _bad(exc) from None
    if check is None:
        raise NotFoundException(f"no check with id {check_id}")
    await svc.scheduler.sync()
    return check_out(check)


@delete(
    "/api/v1/checks/{check_id:int}", guards=[require_admin], tags=["checks"], status_code=HTTP_204_NO_CONTENT
)
async def delete_check(request: Request[Any, Any, Any], check_id: int) -> None:
    svc = services(request)
    if not await check_data.delete_check(db=svc.db, check_id=check_id):
        raise NotFoundException(f"no check with id {check_id}")
    await svc.scheduler.sync()


@post(
    "/api/v1/checks/{check_id:int}/run",
    guards=[require_admin],
    tags=["checks"],
    status_code=HTTP_202_ACCEPTED,
)
async def run_check(request: Request[Any, Any, Any], check_id: int) -> dict[str, Any]:
    """Start a run now. The answer is the run (`running`, or `skipped` if one is in progress);
    poll `GET /api/v1/runs/{id}` for its result."""
    await _check(request, check_id)
    return run_out(await services(request).scheduler.run_now(check_id), brief=True)


@get("/api/v1/checks/{check_id:int}/runs", guards=[require_read], tags=["checks"])
async def list_runs(
    request: Request[Any, Any, Any],
    check_id: int,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    before: int | None = Parameter(default=None, description="Only runs with a smaller id (paging)."),
) -> list[dict[str, Any]]:
    await _check(request, check_id)
    runs = await check_data.list_runs(
        db=services(request).db, check_id=check_id, limit=limit, before_id=before
    )
    return [run_out(r, brief=True) for r in runs]


async def _run(request: Request[Any, Any, Any], run_id: int) -> CheckRun:
    run = await check_data.get_run(db=services(request).db, run_id=run_id)
    if run is None:
        raise NotFoundException(f"no run with id {run_id}")
    return run


@get("/api/v1/runs/{run_id:int}", guards=[require_read], tags=["checks"])
async def get_run(request: Request[Any, Any, Any], run_id: int) -> dict[str, Any]:
    """A run with the probe's full result: steps, vitals, resources, errors, artifacts."""
    return run_out(await _run(request, run_id), data_dir=services(request).settings.data_dir)


@get("/api/v1/runs/{run_id:int}/artifacts/{path:path}", guards=[require_read], tags=["checks"])
async def get_artifact(request: Request[Any, Any, Any], run_id: int, path: str) -> File:
    """A screenshot, trace zip or Lighthouse report of a run (behind auth, like all results)."""
    run = await _run(request, run_id)
    settings = services(request).settings
    root = run_dir(settings.data_dir, run_id).resolve()
    if not root.is_dir() and f"/api/v1/runs/{run_id}/artifacts/{path.lstrip('/')}" in artifact_urls(run):
        raise HTTPException(status_code=410, detail=expired_message(run_id, settings.artifact_retention_days))
    file = (root / path.lstrip("/")).resolve()
    if root not in file.parents or not file.is_file():
        raise NotFoundException(f"run {run_id} has no artifact {path!r}")
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    headers = {"Cache-Control": "private, max-age=86400, immutable", "X-Content-Type-Options": "nosniff"}
    if file.name.endswith(".gz"):
        media_type = "application/gzip"
    if file.suffix == ".html":
        # Lighthouse reports run their own scripts: keep them away from fieldlab's origin.
        headers["Content-Security-Policy"] = "sandbox allow-scripts allow-popups"
    return File(
        file, media_type=media_type, headers=headers, filename=file.name,
        content_disposition_type="attachment" if file.suffix in (".zip", ".gz") else "inline",
    )  # fmt: skip
