"""fieldlab's one Settings object.

Every setting is read from a ``FIELDLAB_<NAME>`` environment variable, has a typed default and a
one-line description in its field metadata. The README lists them all; a test keeps the two in
step. Nothing here reads the environment at import: ``Settings.from_env()`` is called by the CLI
(or by tests, which usually build ``Settings(...)`` directly).
"""

from __future__ import annotations

import dataclasses
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
        metadata=_doc("How long the writer waits to fill a batch after the first beacon arrives (ms)."),
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
    prune_interval_s: float = field(default=3600.0, metadata=_doc("How often the retention job runs."))
    query_cache_ttl_s: float = field(
        default=60.0,
        metadata=_doc("Longest life of a cached query answer (new data for the site invalidates it sooner)."),
    )
    slow_query_ms: float = field(
        default=250.0,
        metadata=_doc("Queries slower than this are logged with their plan and listed by the API."),
    )

    # --- synthetic checks ---------------------------------------------------------------------
    data_dir: str = field(
        default="data",
        metadata=_doc("Where run artifacts (screenshots, traces, Lighthouse reports) are kept."),
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
    config_file: str = field(
        default="",
        metadata=_doc(
            "YAML file of sites and checks applied at start (`serve --config`); monitoring as code."
        ),
    )
    misfire_grace_s: int = field(
        default=300, metadata=_doc("A scheduled run missed (server down or busy) still runs if this late.")
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

    def __post_init__(self) -> None:
        # Bounds that, broken, would silently disable a protection (a queue of 0 is unbounded).
        positive = ("beacon_max_bytes", "beacon_max_metrics", "beacon_max_string", "beacon_max_attribution_keys",
                    "rate_limit_per_ip", "rate_limit_per_site", "rate_limit_api_per_ip", "queue_max",
                    "batch_max_rows", "commit_timeout_s", "workers", "db_pool_size", "rollup_interval_s",
                    "raw_retention_days", "rollup_retention_days", "prune_interval_s", "flow_concurrency",
                    "step_timeout_s", "run_timeout_s", "lighthouse_timeout_s")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not value > 0:  # also catches NaN
                raise SettingsError(f"{env_name(name)}={value!r} must be greater than 0")
        for name in ("batch_max_wait_ms", "site_cache_ttl_s", "sqlite_busy_timeout_ms", "beacon_max_errors",
                     "query_cache_ttl_s", "slow_query_ms"):  # fmt: skip
            value = getattr(self, name)
            if not value >= 0:
                raise SettingsError(f"{env_name(name)}={value!r} must not be negative")
        if self.beacon_max_string > 2048:
            raise SettingsError(
                f"FIELDLAB_BEACON_MAX_STRING={self.beacon_max_string} is over the 2048 the columns hold"
            )
        if not 0 < self.port < 65536:
            raise SettingsError(f"FIELDLAB_PORT={self.port} is not a TCP port")

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
