"""fieldlab's own health metrics (Prometheus), one registry per app instance.

With several server processes (``serve --workers N``) the CLI points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory; prometheus-client then keeps each
process's values in files there and ``/metrics`` merges them, so a scrape sees the whole
server rather than whichever worker answered. What is measured at scrape time (Chromium
processes, free disk) comes from :class:`HostCollector`, added to whichever registry is
exposed, so it works in both modes.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app import logs

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("fieldlab.access")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The execution option that names a query for fieldlab_db_query_duration_seconds:
# ``stmt.execution_options(fieldlab_query="field.rollups")``. Unnamed statements count as "other".
QUERY_NAME = "fieldlab_query"

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_RUN_SECONDS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self, *, chromium: str = "", data_dir: str = "data") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.host = HostCollector(chromium=chromium, data_dir=data_dir)
        r.register(self.host)
        self.beacons_accepted = Counter(
            "fieldlab_beacons_accepted_total", "Beacons committed to the database.", registry=r
        )
        self.measurements_stored = Counter(
            "fieldlab_measurements_stored_total", "Metric values written (inserted or replaced).", registry=r
        )
        self.beacons_rejected = Counter(
            "fieldlab_beacons_rejected_total",
            "Beacons refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "fieldlab_ingest_queue_depth",
            "Beacons waiting for the group-commit writer.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "fieldlab_writer_batch_size",
            "Beacons per writer transaction.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "fieldlab_writer_commit_seconds",
            "Time to write and commit one batch.",
            buckets=_SECONDS,
            registry=r,
        )
        self.writer_errors = Counter(
            "fieldlab_writer_errors_total", "Batches that failed to commit.", registry=r
        )
        self.http_seconds = Histogram(
            "fieldlab_http_request_duration_seconds",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            buckets=_SECONDS,
            registry=r,
        )
        self.db_query_seconds = Histogram(
            "fieldlab_db_query_duration_seconds",
            "Database statements by query name (other: statements without a name).",
            ["query"],
            buckets=_SECONDS,
            registry=r,
        )
        self.scheduler_lag = Gauge(
            "fieldlab_scheduler_lag_seconds",
            "How late the last scheduled check run started.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.run_seconds = Histogram(
            "fieldlab_check_run_duration_seconds",
            "Synthetic check runs by check kind and outcome.",
            ["kind", "outcome"],
            buckets=_RUN_SECONDS,
            registry=r,
        )
        self.lighthouse_seconds = Histogram(
            "fieldlab_lighthouse_duration_seconds",
            "Lighthouse audits (all runs of one check run) by outcome.",
            ["outcome"],
            buckets=_RUN_SECONDS,
            registry=r,
        )
        self.alert_deliveries = Counter(
            "fieldlab_alert_deliveries_total", "Webhook notifications by outcome.", ["outcome"], registry=r
        )
        self.self_alert_breached = Gauge(
            "fieldlab_self_alert_breached",
            "1 when the latest evaluation of a self-alert rule breached its threshold.",
            ["rule"],
            registry=r,
            multiprocess_mode="livemax",
        )

    def _exposed(self) -> CollectorRegistry:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            merged.register(self.host)
            return merged
        return self.registry

    def exposition(self) -> bytes:
        return generate_latest(self._exposed())

    def samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Every sample of the exposed registry (all workers in multiprocess mode), by name."""
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in self._exposed().collect():
            for s in family.samples:
                out.setdefault(s.name, []).append((dict(s.labels), s.value))
        return out

    def attach(self, engine: AsyncEngine) -> None:
        """Time every statement on this engine, labelled by its ``fieldlab_query`` option."""
        observe = self.db_query_seconds.labels
        sync = engine.sync_engine

        @event.listens_for(sync, "before_cursor_execute")
        def _start(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
            conn.info.setdefault("fieldlab_query_started", []).append(time.perf_counter())

        @event.listens_for(sync, "after_cursor_execute")
        def _end(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
            stack = conn.info.get("fieldlab_query_started")
            if not stack:
                return
            elapsed = time.perf_counter() - stack.pop()
            name = context.execution_options.get(QUERY_NAME, "other") if context is not None else "other"
            observe(name).observe(elapsed)

        @event.listens_for(sync, "handle_error")
        def _failed(ctx: Any) -> None:
            stack = ctx.connection.info.get("fieldlab_query_started") if ctx.connection is not None else None
            if stack:
                stack.pop()


class HostCollector(Collector):
    """Values read when scraped: live Chromium processes and free space in the data directory."""

    def __init__(self, *, chromium: str, data_dir: str) -> None:
        self.chromium = chromium
        self.data_dir = data_dir

    def _wanted(self) -> tuple[set[str], set[str]]:
        """(exact executables, executable names). Debian's /usr/bin/chromium is a shell launcher
        that execs /usr/lib/chromium/chromium, so for a script the name is matched instead."""
        names = [self.chromium] if self.chromium else ["chromium", "chromium-browser"]
        paths, basenames = set(), set()
        for name in names:
            found = shutil.which(name) or name
            if not os.path.isabs(found):
                continue
            real = os.path.realpath(found)
            paths.add(real)
            try:
                with open(real, "rb") as f:
                    if f.read(2) == b"#!":
                        basenames.add(os.path.basename(real))
            except OSError:
                continue
        return paths, basenames

    def chromium_processes(self) -> int:
        paths, basenames = self._wanted()
        count = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                exe = os.readlink(f"/proc/{entry.name}/exe").removesuffix(" (deleted)")
            except OSError:  # gone, or another user's process
                continue
            count += exe in paths or os.path.basename(exe) in basenames
        return count

    def free_bytes(self) -> int:
        path = Path(self.data_dir).resolve()
        while not path.exists() and path != path.parent:
            path = path.parent  # not created yet: the disk it will be on
        return shutil.disk_usage(path).free

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "fieldlab_chromium_processes",
            "Live processes running the configured Chromium executable (browsers and their children).",
            value=self.chromium_processes(),
        )
        yield GaugeMetricFamily(
            "fieldlab_data_dir_free_bytes",
            "Free disk space where the data directory is.",
            value=self.free_bytes(),
        )


_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


def http_middleware(metrics: Metrics, *, tracing: bool = False) -> Callable[[ASGIApp], ASGIApp]:
    """Per request: a request id for the logs (an incoming ``X-Request-ID`` when it is sane),
    echoed in the response, and the duration by route template (not the raw path, so the
    label stays bounded) and status."""
    children: dict[tuple[str, str, int], Any] = {}  # labels() costs more than the observation

    def observe(method: str, route: str, status: int, seconds: float) -> None:
        child = children.get((method, route, status))
        if child is None:
            child = children[(method, route, status)] = metrics.http_seconds.labels(
                method, route, str(status)
            )
        child.observe(seconds)

    # Unique, not secret: a random per-process prefix and a counter (urandom per request would
    # be the middleware's largest cost).
    prefix, counter = secrets.token_hex(4), itertools.count(1)

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            rid = ""
            for name, value in scope["headers"]:  # a plain loop: no generator per request
                if name == b"x-request-id":
                    incoming = value.decode("latin-1")
                    rid = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else ""
                    break
            rid = rid or f"{prefix}-{next(counter):x}"
            header = (b"x-request-id", rid.encode())
            status = 500

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", ()), header]
                await send(message)

            route = scope.get("path_template") or "unmatched"
            method = scope.get("method", "GET")
            # Tracing wraps the app before routing; only here is the route template known.
            if tracing and (span := trace.get_current_span()).is_recording():
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("fieldlab.request_id", rid)
            token = logs.request_id.set(rid)
            started = time.perf_counter()
            try:
                await app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                observe(method, route, status, elapsed)
                if access_log.isEnabledFor(logging.DEBUG):  # one line per request only when asked
                    access_log.debug(
                        "%s %s %d %.1f ms", method, scope.get("path", ""), status, elapsed * 1000
                    )
                logs.request_id.reset(token)

        return middleware

    return factory
