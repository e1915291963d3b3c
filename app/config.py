"""fieldlab's one Settings object.

Every setting is read from a ``FIELDLAB_<NAME>`` environment variable, has a typed default and a
one-line description in its field metadata. The README lists them all; a test keeps the two in
step. Nothing here reads the environment at import: ``Settings.from_env()`` is called by the CLI
(or by tests, which usually build ``Settings(...)`` directly).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


class SettingsError(ValueError):
    """A FIELDLAB_* variable holds a value of the wrong shape; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    # --- storage -------------------------------------------------------------------------
    database_url: str = field(
        default="sqlite+aiosqlite:///fieldlab.db",
        metadata=_doc(
            "SQLAlchemy URL. Default: a SQLite file `fieldlab.db` in the working directory. "
            "Use `postgresql+asyncpg://user@host/db` for PostgreSQL."
        ),
    )
    sqlite_busy_timeout_ms: int = field(
        default=5000, metadata=_doc("SQLite `busy_timeout`: how long a writer waits for the lock.")
    )
    db_pool_size: int = field(default=10, metadata=_doc("PostgreSQL connection pool size per process."))
    auto_migrate: bool = field(
        default=True,
        metadata=_doc(
            "`serve` runs `db upgrade` on start for SQLite (PostgreSQL: run `fieldlab db upgrade`)."
        ),
    )

    # --- auth ------------------------------------------------------------------------------
    admin_token: str = field(
        default="",
        metadata=_doc("Bearer token always accepted with admin scope. Empty: only stored tokens work."),
    )

    # --- browser ---------------------------------------------------------------------------
    chromium: str = field(
        default="",
        metadata=_doc("Chromium executable for probes. Empty: `chromium` (or `chromium-browser`) on PATH."),
    )

    # --- beacon limits ---------------------------------------------------------------------
    beacon_max_bytes: int = field(
        default=65536, metadata=_doc("Largest beacon body accepted, checked while reading (413 above it).")
    )
    beacon_max_metrics: int = field(
        default=50,
        metadata=_doc(
            "Most web-vitals objects in one array beacon (a page view has at most its five metrics)."
        ),
    )
    beacon_max_errors: int = field(default=20, metadata=_doc("Most JS errors in one page-view beacon."))
    beacon_max_string: int = field(
        default=2048,
        metadata=_doc("Longest string accepted in any beacon field (URLs, selectors, stacks); at most 2048."),
    )
    beacon_max_attribution_keys: int = field(
        default=32, metadata=_doc("Most keys in one metric's attribution object.")
    )
    beacon_max_age_days: int = field(
        default=2,
        metadata=_doc("Beacon timestamps older than this (or in the future by as much) are clamped."),
    )

    # --- rate limits -----------------------------------------------------------------------
    rate_limit_per_ip: int = field(
        default=100, metadata=_doc("Requests per second one client IP may make to the beacon endpoint.")
    )
    rate_limit_per_site: int = field(
        default=2000, metadata=_doc("Beacons per second accepted for one site key (all clients together).")
    )
    rate_limit_api_per_ip: int = field(
        default=50, metadata=_doc("Requests per second one client IP may make to the rest of the API.")
    )
    redis_url: str = field(
        default="",
        metadata=_doc(
            "Redis URL (`redis://127.0.0.1:6379/0`) for shared rate-limit stores. Empty: in memory."
        ),
    )

    # --- ingest writer ---------------------------------------------------------------------
    queue_max: int = field(
        default=10000, metadata=_doc("Most beacons waiting for commit; beyond it the endpoint answers 503.")
    )
    batch_max_rows: int = field(default=500, metadata=_doc("Most beacons written in one transaction."))
    batch_max_wait_ms: float = field(
        default=5.0,
        metadata=_doc(
            "How long the writer waits for company when a beacon arrives alone (ms); beacons that "
            "gathered during the previous commit are written at once."
        ),
    )
    commit_timeout_s: float = field(
        default=10.0,
        metadata=_doc("How long a beacon request waits for its commit before it answers 503."),
    )
    retry_after_s: int = field(default=5, metadata=_doc("Seconds named in `Retry-After` on 503 answers."))
    site_cache_ttl_s: float = field(
        default=10.0, metadata=_doc("How long a site's key, origins and rules are cached in each process.")
    )

    # --- field analytics -------------------------------------------------------------------
    rollup_interval_s: float = field(
        default=60.0, metadata=_doc("How often closed hours are rolled up (and re-rolled after re-reports).")
    )
    raw_retention_days: int = field(
        default=30,
        metadata=_doc("Days raw beacons (and JS errors) are kept; attribution covers this window."),
    )
    rollup_retention_days: int = field(default=400, metadata=_doc("Days hourly and daily rollups are kept."))
    hourly_rollup_retention_days: int = field(
        default=0,
        metadata=_doc(
            "Days hourly rollups are kept, if fewer than FIELDLAB_ROLLUP_RETENTION_DAYS (0: as long). They are"
            " ~94 % of rollup rows; before this horizon, ranges are answered by whole UTC days and hourly"
            " series are empty. Must exceed FIELDLAB_RAW_RETENTION_DAYS and FIELDLAB_BEACON_MAX_AGE_DAYS."
        ),
    )
    run_retention_days: int = field(
        default=400, metadata=_doc("Days synthetic check runs (their results and numbers) are kept.")
    )
    artifact_retention_days: int = field(
        default=30,
        metadata=_doc(
            "Days a run's screenshots, traces and Lighthouse reports are kept on disk; its numbers stay "
            "for FIELDLAB_RUN_RETENTION_DAYS."
        ),
    )
    prune_interval_s: float = field(default=3600.0, metadata=_doc("How often the retention job runs."))
    query_cache_ttl_s: float = field(
        default=60.0,
        metadata=_doc("Longest life of a cached query answer (new data for the site invalidates it sooner)."),
    )
    slow_query_ms: float = field(
        default=250.0,
        metadata=_doc("Queries slower than this are logged with their plan and listed by the API."),
    )

    # --- searchable logs -----------------------------------------------------------------------
    search_index_interval_s: float = field(
        default=3.0,
        metadata=_doc("How often new JS errors and finished check runs are indexed for log search (s)."),
    )
    search_page_max: int = field(
        default=200, metadata=_doc("Most log events or groups one search request may ask for (`limit`).")
    )
    search_max_offset: int = field(
        default=2000,
        metadata=_doc("Deepest `offset` into search groups (events page with `cursor`, which has no limit)."),
    )
    log_capture_queue_max: int = field(
        default=5000,
        metadata=_doc(
            "fieldlab's own WARNING+ records waiting to be stored for search; beyond it the oldest drop."
        ),
    )

    # --- synthetic checks ---------------------------------------------------------------------
    data_dir: str = field(
        default="data",
        metadata=_doc(
            "Where run artifacts (screenshots, traces, Lighthouse reports), dashboard sessions "
            "(ui-sessions/, without Redis) and the dashboard's CSRF secret (ui-secret) are kept."
        ),
    )
    flows_dir: str = field(
        default="checks",
        metadata=_doc(
            "Python flow files checks may name (`flow_file`); code is never uploaded through the API."
        ),
    )
    allow_private_targets: bool = field(
        default=False,
        metadata=_doc(
            "Let checks visit loopback/private/link-local addresses (off: only public http(s) targets)."
        ),
    )
    allow_target_hosts: str = field(
        default="",
        metadata=_doc(
            "Comma-separated `host:port` (or `host`) entries checks may visit even when private, "
            "e.g. `staging.internal:8080`; narrower than FIELDLAB_ALLOW_PRIVATE_TARGETS."
        ),
    )
    scheduler: bool = field(default=True, metadata=_doc("Run checks on their schedules in this process."))
    flow_concurrency: int = field(
        default=2, metadata=_doc("Most flows running at once (Lighthouse: always one).")
    )
    step_timeout_s: float = field(
        default=30.0, metadata=_doc("Longest a flow step may take before it is killed.")
    )
    run_timeout_s: float = field(default=120.0, metadata=_doc("Longest a whole flow run may take."))
    lighthouse_timeout_s: float = field(
        default=120.0,
        metadata=_doc("Longest one Lighthouse run may take before its process group is killed."),
    )
    lighthouse_mobile_cpu_slowdown: str = field(
        default="4",
        metadata=_doc(
            "CPU slowdown of mobile Lighthouse audits (checks and `fieldlab gate --url`), 1 to 20, or"
            " `auto`. Lighthouse's 4 emulates its reference phone on a host of benchmarkIndex ~1500 (each"
            " run shows the host's): scale it by benchmarkIndex / 1500 on a much slower or faster host,"
            " or let `auto` do that from the benchmarkIndex the host's runs measure."
        ),
    )
    config_file: str = field(
        default="",
        metadata=_doc(
            "YAML file of sites and checks applied at start (`serve --config`); monitoring as code."
        ),
    )
    misfire_grace_s: int = field(
        default=300, metadata=_doc("A scheduled run missed (server down or busy) still runs if this late.")
    )

    # --- budgets, alerts, regressions --------------------------------------------------------
    budgets_file: str = field(
        default="",
        metadata=_doc(
            "Budget file the server judges field data and every check run by (fieldlab YAML, "
            "lighthouserc or budget.json; re-read when it changes). Empty: no server-side evaluation."
        ),
    )
    budget_eval_interval_s: float = field(
        default=300.0,
        metadata=_doc("How often field budgets are evaluated (every check run is evaluated as it ends)."),
    )
    alert_k: int = field(
        default=3, metadata=_doc("An alert fires once K of the last N evaluations of a budget breach a band.")
    )
    alert_n: int = field(
        default=5, metadata=_doc("N of the K-of-N alert rule: how many evaluations are remembered.")
    )
    alert_renotify_s: float = field(
        default=0.0,
        metadata=_doc("Repeat a failing alert this often while it lasts (s); 0: notify only on changes."),
    )
    webhook_timeout_s: float = field(default=10.0, metadata=_doc("Longest one webhook request may take (s)."))
    webhook_retries: int = field(
        default=3, metadata=_doc("Retries after a failed webhook delivery (5xx, 408, 429, no connection).")
    )
    webhook_backoff_s: float = field(
        default=2.0, metadata=_doc("Delay before the first webhook retry (s); it doubles for each next one.")
    )
    deploy_watch_h: int = field(
        default=48,
        metadata=_doc(
            "Hours after a site's latest deploy marker during which the budgets job compares its field "
            "p75 (each metric, mobile and desktop) with the 24 h before the deploy and alerts on "
            "regressions; 0: off."
        ),
    )
    regress_alpha: float = field(
        default=0.05,
        metadata=_doc("Significance level of regression tests (Mann-Whitney U, bootstrap interval)."),
    )
    regress_min_effect_pct: float = field(
        default=5.0, metadata=_doc("Smallest change reported as a regression, in % of the baseline value.")
    )
    regress_min_lab_runs: int = field(
        default=5, metadata=_doc("Fewest lab runs on each side of a comparison (fewer: insufficient-data).")
    )
    regress_min_field_samples: int = field(
        default=100,
        metadata=_doc("Fewest field values on each side of a p75 comparison (fewer: insufficient-data)."),
    )

    # --- server ----------------------------------------------------------------------------
    host: str = field(default="127.0.0.1", metadata=_doc("Address `serve` binds to."))
    port: int = field(default=8000, metadata=_doc("Port `serve` listens on."))
    workers: int = field(
        default=1,
        metadata=_doc(
            "Server processes. Keep 1 on SQLite (one group-commit writer); PostgreSQL: one per core."
        ),
    )
    static_dir: str = field(
        default="",
        metadata=_doc(
            "Directory with the built `fieldlab.js` and UI assets. Empty: `static/` of the checkout."
        ),
    )
    demo: bool = field(
        default=False,
        metadata=_doc(
            "Serve the demo shop at /demo/ (carrying fieldlab.js for the `demo` site). `make run` sets it."
        ),
    )
    log_level: str = field(default="INFO", metadata=_doc("Log level: DEBUG, INFO, WARNING or ERROR."))
    trusted_proxies: str = field(
        default="",
        metadata=_doc("Comma-separated proxy IPs whose `X-Forwarded-For` is believed (for per-IP limits)."),
    )

    # --- self-alerts (fieldlab watching itself; see "Operating fieldlab" in the README) ----------
    self_alert_interval_s: float = field(
        default=30.0, metadata=_doc("How often the self-alert rules are evaluated (seconds).")
    )
    self_alert_reject_rate: float = field(
        default=0.05,
        metadata=_doc(
            "Self-alert when more than this share (0-1) of the beacons since the last evaluation was refused."
        ),
    )
    self_alert_writer_lag_s: float = field(
        default=10.0,
        metadata=_doc("Self-alert when the oldest beacon waiting for the writer is older (seconds)."),
    )
    self_alert_scheduler_lag_s: float = field(
        default=120.0, metadata=_doc("Self-alert when a scheduled check run started this late (seconds).")
    )
    self_alert_min_free_mb: float = field(
        default=1024.0,
        metadata=_doc("Self-alert when the disk holding FIELDLAB_DATA_DIR has less free (MiB)."),
    )

    # --- dashboard ---------------------------------------------------------------------------
    ui_secret: str = field(
        default="",
        metadata=_doc(
            "Secret that signs the dashboard's CSRF tokens. Empty: `fieldlab serve` keeps one in "
            "FIELDLAB_DATA_DIR/ui-secret (mode 0600), shared by its workers and restarts."
        ),
    )
    ui_session_max_age_s: int = field(
        default=43200, metadata=_doc("How long a dashboard sign-in lasts (seconds).")
    )

    @property
    def hourly_rollup_days(self) -> int:
        """How long hourly rollups are kept, the setting's 0 resolved."""
        return self.hourly_rollup_retention_days or self.rollup_retention_days

    def __post_init__(self) -> None:
        # Bounds that, broken, would silently disable a protection (a queue of 0 is unbounded).
        positive = ("beacon_max_bytes", "beacon_max_metrics", "beacon_max_string", "beacon_max_attribution_keys",
                    "rate_limit_per_ip", "rate_limit_per_site", "rate_limit_api_per_ip", "queue_max",
                    "batch_max_rows", "commit_timeout_s", "workers", "db_pool_size", "rollup_interval_s",
                    "raw_retention_days", "rollup_retention_days", "run_retention_days",
                    "artifact_retention_days", "prune_interval_s", "flow_concurrency",
                    "search_index_interval_s", "search_page_max", "search_max_offset", "log_capture_queue_max",
                    "step_timeout_s", "run_timeout_s", "lighthouse_timeout_s", "ui_session_max_age_s")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not value > 0:  # also catches NaN
                raise SettingsError(f"{env_name(name)}={value!r} must be greater than 0")
        for name in ("batch_max_wait_ms", "site_cache_ttl_s", "sqlite_busy_timeout_ms", "beacon_max_errors",
                     "query_cache_ttl_s", "slow_query_ms"):  # fmt: skip
            value = getattr(self, name)
            if not value >= 0:
                raise SettingsError(f"{env_name(name)}={value!r} must not be negative")
        hourly = self.hourly_rollup_retention_days
        if (
            hourly
            and not max(self.raw_retention_days, self.beacon_max_age_days)
            < hourly
            <= self.rollup_retention_days
        ):
            # A day is rebuilt from its hourly rollups when a beacon for it arrives or its raw rows
            # are re-rolled: both must be impossible once that day's hours are gone.
            raise SettingsError(
                f"FIELDLAB_HOURLY_ROLLUP_RETENTION_DAYS={hourly} must be 0, or more than FIELDLAB_RAW_RETENTION_DAYS"
                f" ({self.raw_retention_days}) and FIELDLAB_BEACON_MAX_AGE_DAYS ({self.beacon_max_age_days}) and at"
                f" most FIELDLAB_ROLLUP_RETENTION_DAYS ({self.rollup_retention_days})"
            )
        if self.beacon_max_string > 2048:
            raise SettingsError(
                f"FIELDLAB_BEACON_MAX_STRING={self.beacon_max_string} is over the 2048 the columns hold"
            )
        if self.lighthouse_mobile_cpu_slowdown.strip().lower() != "auto":
            try:
                slowdown = float(self.lighthouse_mobile_cpu_slowdown)
            except ValueError:
                slowdown = math.nan
            if not 1 <= slowdown <= 20:
                raise SettingsError(
                    f"FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN={self.lighthouse_mobile_cpu_slowdown!r} must be"
                    " between 1 and 20, or auto"
                )
        if not 0 < self.port < 65536:
            raise SettingsError(f"FIELDLAB_PORT={self.port} is not a TCP port")
        for name in ("budget_eval_interval_s", "webhook_timeout_s", "regress_min_lab_runs",
                     "regress_min_field_samples"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise SettingsError(f"{env_name(name)}={getattr(self, name)!r} must be greater than 0")
        if not self.self_alert_interval_s > 0:
            raise SettingsError(
                f"FIELDLAB_SELF_ALERT_INTERVAL_S={self.self_alert_interval_s!r} must be greater than 0"
            )
        if not 0 <= self.self_alert_reject_rate <= 1:
            raise SettingsError(
                f"FIELDLAB_SELF_ALERT_REJECT_RATE={self.self_alert_reject_rate!r} must be between 0 and 1"
            )
        for name in ("self_alert_writer_lag_s", "self_alert_scheduler_lag_s", "self_alert_min_free_mb"):
            if not getattr(self, name) >= 0:
                raise SettingsError(f"{env_name(name)}={getattr(self, name)!r} must not be negative")
        for name in ("alert_renotify_s", "webhook_retries", "webhook_backoff_s", "regress_min_effect_pct",
                     "deploy_watch_h"):  # fmt: skip
            if not getattr(self, name) >= 0:
                raise SettingsError(f"{env_name(name)}={getattr(self, name)!r} must not be negative")
        if not 1 <= self.alert_k <= self.alert_n:
            raise SettingsError(
                f"FIELDLAB_ALERT_K={self.alert_k} must be between 1 and FIELDLAB_ALERT_N={self.alert_n}"
            )
        if not 0 < self.regress_alpha < 1:
            raise SettingsError(f"FIELDLAB_REGRESS_ALPHA={self.regress_alpha} must be between 0 and 1")
        if self.allow_target_hosts:
            for entry in self.target_hosts():
                # An allowed host skips the address checks, so it must never open the metadata service.
                if _is_metadata_host(entry):
                    raise SettingsError(f"FIELDLAB_ALLOW_TARGET_HOSTS: {entry} is a cloud metadata address")

    def target_hosts(self) -> tuple[str, ...]:
        """FIELDLAB_ALLOW_TARGET_HOSTS as entries (``host:port`` or ``host``)."""
        return tuple(h.strip().lower() for h in self.allow_target_hosts.split(",") if h.strip())

    def lighthouse_cpu_slowdown(self, preset: str) -> float | str | None:
        """The CPU slowdown to give Lighthouse for ``preset``; None: the preset's own; "auto":
        calibrated to the host (probes.lighthouse.HostCalibration), which every preset's runs
        feed with the host's speed."""
        setting = self.lighthouse_mobile_cpu_slowdown.strip().lower()
        if setting == "auto":
            return "auto"
        if preset == "mobile" and float(setting) != 4.0:
            return float(setting)
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build Settings from ``FIELDLAB_*`` variables; ``overrides`` win (CLI flags)."""
        env = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = env_name(f.name)
            if name in env:
                values[f.name] = _parse(name, env[name], hints[f.name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def static_path(self) -> Path:
        if self.static_dir:
            return Path(self.static_dir)
        return Path(__file__).resolve().parent.parent / "static"


def env_name(field_name: str) -> str:
    return f"FIELDLAB_{field_name.upper()}"


def documented_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, for the README and `--help`."""
    return [
        (env_name(f.name), repr(f.default) if f.default != "" else '""', f.metadata["doc"])
        for f in dataclasses.fields(Settings)
    ]


def _is_metadata_host(entry: str) -> bool:
    from probes.safety import METADATA_ADDRESSES, METADATA_HOSTS

    host = entry.strip().lower()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        return ipaddress.ip_address(host) in METADATA_ADDRESSES
    except ValueError:
        return host.rstrip(".") in METADATA_HOSTS


def _parse(name: str, raw: str, kind: Any) -> Any:
    if isinstance(kind, types.UnionType):  # e.g. `str | None`
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
