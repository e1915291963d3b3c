"""The app factory. Nothing here runs at import: ``create_app(settings)`` builds everything,
and the lifespan starts and stops what needs the event loop (the writer)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from time import time
from typing import Any

from litestar import Litestar, MediaType, Request, Response, Router
from litestar.config.compression import CompressionConfig
from litestar.exceptions import HTTPException, ValidationException
from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.types import Send
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app import configfile
from app.api import admin, beacon, checks, field, health, sites, snippet
from app.api.deps import Services, client_ip
from app.api.openapi import add_beacon_schemas, openapi_config
from app.config import Settings
from app.db import Database, now_ms
from app.field.cache import QueryCache
from app.field.retention import prune
from app.field.rollups import run_rollups
from app.ingest.decode import Limits
from app.ingest.writer import GroupCommitWriter
from app.jobs import Periodic
from app.observability import Metrics
from app.runner import LocalProbeRunner
from app.scheduler import CheckScheduler
from app.sites import SiteCache, list_sites
from app.slowlog import SlowQueryLog

log = logging.getLogger("fieldlab")


class _RateLimit(RateLimitMiddleware):
    """Litestar's limiter, with ``Retry-After`` on the 429 and no rate headers on 2xx answers
    (they would only tell a scraper how hard it may push)."""

    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        headers = super().create_response_headers(cache_object)
        headers["Retry-After"] = str(max(1, cache_object.reset - int(time())))
        return headers

    def create_send_wrapper(self, send: Send, cache_object: CacheObject) -> Send:
        return send


# The limiters share one store and key on the identifier alone, so each names its own space.
def _beacon_per_ip(request: Request[Any, Any, Any]) -> str:
    return f"beacon-ip:{client_ip(request)}"


def _api_per_ip(request: Request[Any, Any, Any]) -> str:
    return f"api-ip:{client_ip(request)}"


def _per_site(request: Request[Any, Any, Any]) -> str:
    return f"site:{request.query_params.get('site', '')}"


def _limiter(per_second: int, identifier: Any, store: str) -> Any:
    return RateLimitConfig(
        rate_limit=("second", per_second),
        identifier_for_request=identifier,
        middleware_class=_RateLimit,
        store=store,
    ).middleware


def _error_json(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"status_code": status, "detail": detail}, status_code=status, headers=headers,
                    media_type=MediaType.JSON)  # fmt: skip


def _db_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.warning("database unavailable on %s: %s", request.url.path, exc)
    retry = str(request.app.state.services.settings.retry_after_s)
    return _error_json(503, "database unavailable; retry later", {"Retry-After": retry})


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Litestar says "Validation failed for POST /x" and lists the fields in ``extra``; put the
    fields into ``detail`` too, so the one line a client logs names what was wrong."""
    problems = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            where = item.get("key") or item.get("source") or "body"
            problems.append(f"{where}: {item.get('message', 'invalid')}")
    detail = "; ".join(problems) or exc.detail
    return Response(
        {"status_code": 400, "detail": detail, "extra": exc.extra}, status_code=400, media_type=MediaType.JSON
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, HTTPException):
        return _error_json(exc.status_code, exc.detail, exc.headers)
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    # The beacon path never answers 500: a client should retry, and nothing was acknowledged.
    if request.url.path == "/api/v1/beacon":
        return _db_unavailable(request, exc)
    return _error_json(500, "internal error; see the server log")


def _stores(settings: Settings) -> dict[str, Store]:
    if settings.redis_url:
        return {
            "rate_limit": RedisStore.with_client(url=settings.redis_url, namespace="fieldlab_rl"),
            "query_cache": RedisStore.with_client(url=settings.redis_url, namespace="fieldlab_qc"),
        }
    return {"rate_limit": MemoryStore(), "query_cache": MemoryStore()}


def _jobs(settings: Settings, db: Database, cache: QueryCache) -> dict[str, Periodic]:
    async def rollups() -> None:
        await run_rollups(db, now_ms=now_ms())

    async def retention() -> None:
        removed = await prune(
            db,
            now_ms=now_ms(),
            raw_days=settings.raw_retention_days,
            rollup_days=settings.rollup_retention_days,
        )
        if any(removed.values()):
            await cache.bump(s.id for s in await list_sites(db=db) if s.id is not None)

    return {
        "rollups": Periodic("rollups", settings.rollup_interval_s, rollups, first_delay_s=5.0),
        "retention": Periodic("retention", settings.prune_interval_s, retention, first_delay_s=30.0),
    }


def _app_version() -> str:
    try:
        return version("fieldlab")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()
    db = Database(settings)
    metrics = Metrics()
    stores = _stores(settings)
    cache = QueryCache(stores["query_cache"], settings.query_cache_ttl_s)
    slow_queries = SlowQueryLog(settings.slow_query_ms)
    slow_queries.attach(db.read_engine)
    svc = Services(
        settings=settings,
        db=db,
        metrics=metrics,
        writer=GroupCommitWriter(
            db,
            metrics,
            queue_max=settings.queue_max,
            batch_max_rows=settings.batch_max_rows,
            batch_max_wait_s=settings.batch_max_wait_ms / 1000,
            on_commit=cache.bump,
        ),
        sites=SiteCache(db, settings.site_cache_ttl_s),
        limits=Limits(
            max_metrics=settings.beacon_max_metrics,
            max_errors=settings.beacon_max_errors,
            max_string=settings.beacon_max_string,
            max_attribution_keys=settings.beacon_max_attribution_keys,
            max_age_ms=settings.beacon_max_age_days * 86_400_000,
        ),
        cache=cache,
        slow_queries=slow_queries,
        jobs=_jobs(settings, db, cache),
        scheduler=CheckScheduler(db=db, runner=LocalProbeRunner(settings), settings=settings),
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        svc.snippet = snippet.StaticAsset.load(settings.static_path() / "fieldlab.js")
        add_beacon_schemas(app)
        if settings.config_file:
            applied = await configfile.apply(
                db=db, path=Path(settings.config_file), flows_dir=Path(settings.flows_dir)
            )
            log.info("applied %s: %s", settings.config_file, applied)
        svc.writer.start()
        for job in svc.jobs.values():
            job.start()
        if settings.scheduler:
            await svc.scheduler.start()
        try:
            yield
        finally:
            if settings.scheduler:
                await svc.scheduler.stop()
            for job in svc.jobs.values():
                await job.stop()
            # Runs on SIGTERM after the server stopped taking requests: commit what is queued.
            await svc.writer.stop()
            await db.dispose()

    ingest = Router(
        path="/",
        route_handlers=[beacon.beacon_preflight, beacon.beacon],
        middleware=[
            _limiter(settings.rate_limit_per_ip, _beacon_per_ip, "rate_limit"),
            _limiter(settings.rate_limit_per_site, _per_site, "rate_limit"),
        ],
    )
    api = Router(
        path="/",
        route_handlers=[
            sites.create_site,
            sites.list_sites,
            sites.get_site,
            sites.create_token,
            field.summary,
            field.series,
            field.distribution,
            field.top_attribution,
            field.batch,
            admin.slow_queries,
            admin.run_job,
            checks.create_check,
            checks.list_checks,
            checks.get_check,
            checks.update_check,
            checks.delete_check,
            checks.run_check,
            checks.list_runs,
            checks.get_run,
            checks.get_artifact,
        ],
        middleware=[_limiter(settings.rate_limit_api_per_ip, _api_per_ip, "rate_limit")],
    )
    handlers: list[Any] = [ingest, api, health.healthz, health.readyz, health.metrics, snippet.snippet]
    if settings.demo:
        from app.demo import demo_page

        handlers.append(demo_page)
    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        openapi_config=openapi_config(_app_version()),
        request_max_body_size=settings.beacon_max_bytes,
        stores=stores,
        # Precompressed assets (the snippet) and empty beacon answers are left alone.
        compression_config=CompressionConfig(
            backend="brotli",
            brotli_gzip_fallback=True,
            minimum_size=512,
            exclude=["/fieldlab.js", "/api/v1/beacon"],
        ),
        exception_handlers={
            ValidationException: _validation,
            OperationalError: _db_unavailable,
            DBAPIError: _db_unavailable,
            PoolTimeout: _db_unavailable,
            ConnectionError: _db_unavailable,
            Exception: _unexpected,
        },
        debug=False,
        logging_config=None,  # app.logs configures logging once, for uvicorn and us alike
    )
    app.state.services = svc
    return app


def app_from_env() -> Litestar:
    """Entry point for ``uvicorn --factory`` (what ``fieldlab serve`` runs in each worker)."""
    from app.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings)
