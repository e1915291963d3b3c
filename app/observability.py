"""fieldlab's own health metrics (Prometheus), one registry per app instance.

With several server processes (``serve --workers N``) the CLI points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory; prometheus-client then keeps each
process's values in files there and ``/metrics`` merges them, so a scrape sees the whole
server rather than whichever worker answered.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
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
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.writer_errors = Counter(
            "fieldlab_writer_errors_total", "Batches that failed to commit.", registry=r
        )

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
