"""The "fieldlab health" page (admin): is ingest healthy, is the scheduler keeping up, what do
the database and the browsers do. Numbers come from the live Metrics (all workers in
multiprocess mode), so the page shows what /metrics would; self-alert states come from the
alert store, like budgets'."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

from litestar import Request, get
from litestar.response import Template

from app.api.deps import services
from app.budgets import store
from app.selfalerts import SCOPE
from app.ui.auth import require_admin_session
from app.ui.context import page

Samples = dict[str, list[tuple[dict[str, str], float]]]


def _total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for lb, v in samples.get(name, []) if all(lb.get(k) == x for k, x in labels.items()))


def quantile(samples: Samples, name: str, q: float, **labels: str) -> float | None:
    """A quantile from a histogram's cumulative buckets (linear within a bucket), as
    Prometheus's histogram_quantile does; None without observations."""
    buckets: dict[float, float] = defaultdict(float)
    for lb, v in samples.get(f"{name}_bucket", []):
        if all(lb.get(k) == x for k, x in labels.items()):
            buckets[float(lb["le"])] += v
    if not buckets:
        return None
    bounds = sorted(buckets)
    count = buckets[bounds[-1]]
    if count == 0:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if math.isinf(bound):
                return lower  # past the last finite bucket: its bound is all we know
            width = buckets[bound] - below
            return lower + (bound - lower) * ((rank - below) / width if width else 1.0)
        lower, below = bound, buckets[bound]
    return lower


def _mean(samples: Samples, name: str, **labels: str) -> float | None:
    count = _total(samples, f"{name}_count", **labels)
    return _total(samples, f"{name}_sum", **labels) / count if count else None


def health_numbers(request: Request[Any, Any, Any]) -> dict[str, Any]:
    svc = services(request)
    metrics = svc.metrics
    samples = metrics.samples()
    rates = request.app.state.self_alerts.rates(samples)
    rejected = sorted(
        ((lb.get("reason", ""), v) for lb, v in samples.get("fieldlab_beacons_rejected_total", []) if v),
        key=lambda r: -r[1],
    )
    routes: dict[tuple[str, str], list[float]] = {}
    for lb, v in samples.get("fieldlab_http_request_duration_seconds_count", []):
        key = (lb["method"], lb["route"])
        routes.setdefault(key, [0.0, 0.0])[0] += v
    for lb, v in samples.get("fieldlab_http_request_duration_seconds_sum", []):
        routes.setdefault((lb["method"], lb["route"]), [0.0, 0.0])[1] += v
    queries = sorted({lb["query"] for lb, _ in samples.get("fieldlab_db_query_duration_seconds_count", [])})
    hour_ago = (time.time() - 3600) * 1000
    return {
        "ingest": {
            "accepted": _total(samples, "fieldlab_beacons_accepted_total"),
            "rejected": _total(samples, "fieldlab_beacons_rejected_total"),
            "accepted_per_s": rates.get("accepted_per_s"),
            "rejected_per_s": rates.get("rejected_per_s"),
            "rate_window_s": rates.get("window_s"),
            "measurements": _total(samples, "fieldlab_measurements_stored_total"),
            "queue_depth": _total(samples, "fieldlab_ingest_queue_depth"),
            "writer_errors": _total(samples, "fieldlab_writer_errors_total"),
            "batch_mean": _mean(samples, "fieldlab_writer_batch_size"),
            "commit_p50_ms": _ms(quantile(samples, "fieldlab_writer_commit_seconds", 0.5)),
            "commit_p99_ms": _ms(quantile(samples, "fieldlab_writer_commit_seconds", 0.99)),
        },
        "rejected_by_reason": rejected,
        "scheduler": {
            "lag_s": _total(samples, "fieldlab_scheduler_lag_seconds"),
            "running": len(svc.scheduler.running),
            "runs": _total(samples, "fieldlab_check_run_duration_seconds_count"),
            "run_p95_s": quantile(samples, "fieldlab_check_run_duration_seconds", 0.95),
            "lighthouse_p95_s": quantile(samples, "fieldlab_lighthouse_duration_seconds", 0.95),
        },
        "host": {
            "chromium_processes": _total(samples, "fieldlab_chromium_processes"),
            "free_mib": _total(samples, "fieldlab_data_dir_free_bytes") / 2**20,
        },
        "slow_queries": {
            "kept": len(svc.slow_queries.entries),
            "last_hour": sum(1 for e in svc.slow_queries.entries if e.at_ms >= hour_ago),
        },
        "queries": [
            (
                q,
                _total(samples, "fieldlab_db_query_duration_seconds_count", query=q),
                _ms(quantile(samples, "fieldlab_db_query_duration_seconds", 0.95, query=q)),
            )
            for q in queries
        ],
        "routes": sorted(
            ((m, r, n, (s / n * 1000) if n else None) for (m, r), (n, s) in routes.items()),
            key=lambda x: -x[2],
        )[:20],
        "deliveries": {
            lb.get("outcome", ""): v for lb, v in samples.get("fieldlab_alert_deliveries_total", [])
        },
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


@get("/health", include_in_schema=False, guards=[require_admin_session])
async def health(request: Request[Any, Any, Any]) -> Template:
    numbers = health_numbers(request)
    db = services(request).db
    states = await store.alert_states(db=db, scope=SCOPE)
    # From the database, not the job's memory: right after a restart, or on a worker that does
    # not run the background jobs, the stored verdicts are the latest there are.
    latest = await store.latest_verdicts(db=db, states=states)
    return await page(request, "health.html", n=numbers, states=states, latest=latest)
