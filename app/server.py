"""The app factory. Nothing here runs at import: ``create_app(settings)`` builds everything,
and the lifespan starts and stops what needs the event loop (the writer)."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from litestar import Litestar, MediaType, Request, Response, Router
from litestar.config.compression import CompressionConfig
from litestar.exceptions import HTTPException, ValidationException
from litestar.stores.base import Store
from litestar.stores.file import FileStore
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.types import Scope
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app import configfile, ratelimit, tracing, ui
from app.api import admin, beacon, budgets, checks, field, health, sites, snippet
from app.api import search as search_api
from app.api.deps import Services
from app.api.openapi import add_beacon_schemas, openapi_config
from app.budgets.notify import WebhookNotifier
from app.budgets.server_eval import FileEvaluator
from app.budgets.service import BudgetService
from app.config import Settings
from app.db import Database, now_ms
from app.field.cache import QueryCache
from app.field.retention import prune
from app.field.rollups import run_rollups
from app.ingest.decode import Limits
from app.ingest.writer import GroupCommitWriter
from app.jobs import Periodic
from app.leader import Leadership
from app.observability import Metrics, http_middleware
from app.run_retention import prune_runs
from app.runner import LocalProbeRunner, target_policy
from app.scheduler import CheckScheduler
from app.search.store import Indexer, LogCapture
from app.selfalerts import SelfAlerts
from app.sites import SiteCache, list_sites
from app.slowlog import SlowQueryLog

log = logging.getLogger("fieldlab")


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
            "query_cache": RedisStore.with_client(url=settings.redis_url, namespace="fieldlab_qc"),
            "ui_sessions": RedisStore.with_client(url=settings.redis_url, namespace="fieldlab_ui"),
        }
    # Sessions in files under the data directory: every worker of one host sees every sign-in,
    # and a restart signs nobody out. The query cache may differ per worker (it is a cache).
    return {"query_cache": MemoryStore(), "ui_sessions": FileStore(sessions_dir(settings))}


def sessions_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "ui-sessions"


def _jobs(
    settings: Settings, db: Database, cache: QueryCache, stores: dict[str, Store]
) -> dict[str, Periodic]:
    async def rollups() -> None:
        await run_rollups(db, now_ms=now_ms())

    async def retention() -> None:
        removed = await prune(
            db,
            now_ms=now_ms(),
            raw_days=settings.raw_retention_days,
            rollup_days=settings.rollup_retention_days,
            hourly_days=settings.hourly_rollup_days,
        )
        if any(removed.values()):
            await cache.bump(s.id for s in await list_sites(db=db) if s.id is not None)
        await prune_runs(db, data_dir=settings.data_dir, now_ms=now_ms(), run_days=settings.run_retention_days,
                         artifact_days=settings.artifact_retention_days)  # fmt: skip
        sessions = stores["ui_sessions"]
        if isinstance(sessions, FileStore):
            await sessions.delete_expired()  # sign-ins never seen again (Redis expires its own)

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
    metrics = Metrics(chromium=settings.chromium, data_dir=settings.data_dir)
    metrics.attach(db.write_engine)
    if db.read_engine is not db.write_engine:
        metrics.attach(db.read_engine)
    traces = tracing.start(_app_version())
    if traces is not None:
        traces.instrument(db.write_engine, db.read_engine)
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
        jobs=_jobs(settings, db, cache, stores),
        scheduler=CheckScheduler(
            db=db, runner=LocalProbeRunner(settings, metrics=metrics), settings=settings, metrics=metrics
        ),
    )
    budget_service = BudgetService(db=db, settings=settings, notifier=WebhookNotifier(
        db=db, timeout_s=settings.webhook_timeout_s, retries=settings.webhook_retries,
        backoff_s=settings.webhook_backoff_s, metrics=metrics,
    ), evaluator=FileEvaluator(settings.budgets_file, artifacts_root=svc.scheduler.artifacts_root,
                               raw_retention_days=settings.raw_retention_days) if settings.budgets_file else None)  # fmt: skip
    svc.jobs["budgets"] = Periodic("budgets", settings.budget_eval_interval_s, budget_service.periodic,
                                   first_delay_s=60.0)  # fmt: skip
    svc.scheduler.on_run = budget_service.on_run
    svc.jobs["search-index"] = Periodic("search-index", settings.search_index_interval_s, Indexer(db).run,
                                        first_delay_s=min(2.0, settings.search_index_interval_s))  # fmt: skip
    log_capture = LogCapture(db, queue_max=settings.log_capture_queue_max)
    self_alerts = SelfAlerts(settings=settings, metrics=metrics, writer=svc.writer, scheduler=svc.scheduler,
                             recorder=budget_service)  # fmt: skip
    svc.jobs["self-alerts"] = Periodic("self-alerts", settings.self_alert_interval_s, self_alerts.periodic,
                                       first_delay_s=settings.self_alert_interval_s)  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        svc.snippet = snippet.StaticAsset.load(settings.static_path() / "fieldlab.js")
        if not settings.redis_url:
            sessions_dir(settings).mkdir(parents=True, exist_ok=True, mode=0o700)
        add_beacon_schemas(app, beacon.PATH)
        if settings.config_file:
            applied = await configfile.apply(
                db=db,
                path=Path(settings.config_file),
                flows_dir=Path(settings.flows_dir),
                policy=target_policy(settings),
            )
            log.info("applied %s: %s", settings.config_file, applied)
        svc.writer.start()
        log_capture.start()

        async def elected() -> None:
            for job in svc.jobs.values():
                job.start()
            if settings.scheduler:
                await svc.scheduler.start()

        async def deposed() -> None:
            if settings.scheduler:
                await svc.scheduler.stop()
            for job in svc.jobs.values():
                await job.stop()

        # Every worker serves; one of them (see app/leader.py) runs rollups, retention and checks.
        leadership = Leadership(db, on_elected=elected, on_deposed=deposed)
        await leadership.start()
        try:
            yield
        finally:
            await leadership.stop()
            # Runs on SIGTERM after the server stopped taking requests: commit what is queued.
            await svc.writer.stop()
            await log_capture.stop()
            await budget_service.close()
            await db.dispose()
            if traces is not None:
                traces.close()

    # All limits share one storage (memory, or Redis shared by every worker); each rule keeps
    # its own key space.
    limits_storage = ratelimit.SharedLimiter(settings.redis_url)
    per_ip = ratelimit.per_ip(settings.trusted_proxies)

    def count_refused_beacon(scope: Scope, _space: str) -> None:
        if scope.get("method") == "POST":  # not a refused CORS preflight
            metrics.beacons_rejected.labels("rate_limited").inc()

    ingest = Router(
        path="/",
        route_handlers=[beacon.beacon],
        middleware=[
            ratelimit.limiter(
                limits_storage,
                ratelimit.Rule(settings.rate_limit_per_ip, "beacon-ip", per_ip),
                ratelimit.Rule(settings.rate_limit_per_site, "site", ratelimit.per_site_key),
                on_refused=count_refused_beacon,
            )
        ],
    )
    api = Router(
        path="/",
        route_handlers=[
            sites.create_site,
            sites.list_sites,
            sites.get_site,
            sites.update_site,
            sites.delete_site,
            sites.create_token,
            sites.list_tokens,
            sites.revoke_token,
            field.summary,
            field.series,
            field.distribution,
            field.top_attribution,
            field.lab_series,
            field.batch,
            admin.slow_queries,
            admin.run_job,
            search_api.log_events,
            search_api.log_groups,
            checks.create_check,
            checks.list_checks,
            checks.get_check,
            checks.update_check,
            checks.delete_check,
            checks.run_check,
            checks.list_runs,
            checks.get_run,
            checks.get_artifact,
            budgets.add_marker,
            budgets.list_markers,
            budgets.delete_marker,
            budgets.field_regressions,
            budgets.lab_regressions,
            budgets.record_evaluation,
            budgets.status_history,
            budgets.alert_states,
            budgets.create_webhook,
            budgets.list_webhooks,
            budgets.delete_webhook,
            budgets.test_webhook,
            budgets.list_deliveries,
        ],
        middleware=[
            ratelimit.limiter(
                limits_storage, ratelimit.Rule(settings.rate_limit_api_per_ip, "api-ip", per_ip)
            )
        ],
    )
    handlers: list[Any] = [ingest, api, health.healthz, health.readyz, health.metrics, snippet.snippet]
    handlers += ui.handlers(settings)
    if settings.demo:
        from app.demo import demo_page

        handlers.append(demo_page)
    app = Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        openapi_config=openapi_config(_app_version()),
        request_max_body_size=settings.beacon_max_bytes,
        stores=stores,
        template_config=ui.template_config(),
        # Precompressed assets (the snippet) and empty beacon answers are left alone.
        compression_config=CompressionConfig(
            backend="brotli",
            brotli_gzip_fallback=True,
            minimum_size=512,
            exclude=["/fieldlab.js", "/api/v1/beacon", "/static/ui/"],
        ),
        exception_handlers={
            ValidationException: _validation,
            OperationalError: _db_unavailable,
            DBAPIError: _db_unavailable,
            PoolTimeout: _db_unavailable,
            ConnectionError: _db_unavailable,
            Exception: _unexpected,
        },
        middleware=[http_middleware(metrics, tracing=traces is not None)],
        plugins=[traces.plugin()] if traces is not None else [],
        debug=False,
        logging_config=None,  # app.logs configures logging once, for uvicorn and us alike
    )
    app.state.services = svc
    app.state.budgets = budget_service
    app.state.self_alerts = self_alerts
    return app


def app_from_env() -> Litestar:
    """Entry point for ``uvicorn --factory`` (what ``fieldlab serve`` runs in each worker)."""
    from app.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    app = create_app(settings)
    tune_process()
    return app


def tune_process() -> None:
    """For a serving process, once the app is built.

    What start-up built (SQLAlchemy, Litestar, the app) lives as long as the process: keep it
    out of every collection, which would otherwise walk all of it while requests wait. A beacon
    allocates enough containers to start a young collection every few requests at the default
    threshold of 700; 50,000 keeps them rare and short.

    The SQLite ingest writer's thread takes the GIL back several times per batch (binding rows,
    after each statement, after COMMIT), and each time it waits for the busy event loop to
    reach the switch interval: at the default 5 ms that wait, not SQLite, was most of a
    commit, and commits pace the whole pipeline. At 1 ms, bench/beacon_bench.py on SQLite
    (side by side, twice) gave 3,650 and 2,620 beacons/s against 2,806 and 2,421."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    sys.setswitchinterval(0.001)
