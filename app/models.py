"""Tables. Times are stored as epoch milliseconds (BIGINT): portable across SQLite and
PostgreSQL, index-friendly, and hour buckets are plain integer division."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JsonType = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# BIGINT ids on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-assigned rowid.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Tables whose ids are referenced from outside their rows (scopes like "site:3" in budgets
# files, marker and run ids in URLs, artifact directories): SQLite must not hand a deleted row's
# id to the next one (migration 0007). PostgreSQL's sequences never do.
NEVER_REUSED: dict[str, Any] = {"sqlite_autoincrement": True}


class Site(SQLModel, table=True):
    __tablename__ = "site"
    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    key: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    origins: list[str] = Field(default_factory=list, sa_type=JsonType)
    # [{"pattern": "/product/*", "group": "/product/:id"}], first match wins.
    page_groups: list[dict[str, str]] = Field(default_factory=list, sa_type=JsonType)
    # Query parameters kept in stored URLs; everything else is stripped.
    query_allowlist: list[str] = Field(default_factory=list, sa_type=JsonType)
    created_ms: int = Field(sa_type=sa.BigInteger)


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    scope: str = Field(max_length=16)
    # sha256 of the token: tokens are 256-bit random, so a fast hash is enough and a leaked
    # table does not reveal them.
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    prefix: str = Field(max_length=16)
    # A read token may be limited to one site; admin tokens and unscoped read tokens see all.
    site_id: int | None = Field(default=None, foreign_key="site.id")
    created_ms: int = Field(sa_type=sa.BigInteger)


class Measurement(SQLModel, table=True):
    """One metric of one page view. (site, page view, metric) is unique: a re-report replaces."""

    __tablename__ = "measurement"
    __table_args__ = (
        sa.UniqueConstraint("site_id", "pageview_id", "metric", name="uq_measurement_pageview_metric"),
        # Raw queries: one site, one metric, a time range; page/device filter the rest.
        sa.Index("ix_measurement_site_metric_ts", "site_id", "metric", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    site_id: int = Field(foreign_key="site.id")
    pageview_id: str = Field(max_length=64)
    metric: str = Field(max_length=8)
    value: float
    ts: int = Field(sa_type=sa.BigInteger)
    received_ms: int = Field(sa_type=sa.BigInteger)
    url: str = Field(max_length=2048)
    page_group: str = Field(max_length=256)
    device: str = Field(max_length=8)
    nav: str = Field(max_length=24)
    connection: str = Field(max_length=16)
    browser: str = Field(max_length=32)
    is_bot: bool = False
    attribution: dict[str, Any] | None = Field(default=None, sa_type=JsonType)


class JsError(SQLModel, table=True):
    """A JavaScript error a page view reported. (site, page view, seq) is unique, so a page view
    that re-sends its beacon does not duplicate its errors."""

    __tablename__ = "js_error"
    __table_args__ = (
        sa.UniqueConstraint("site_id", "pageview_id", "seq", name="uq_js_error_pageview_seq"),
        sa.Index("ix_js_error_site_ts", "site_id", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    site_id: int = Field(foreign_key="site.id")
    pageview_id: str = Field(max_length=64)
    seq: int
    ts: int = Field(sa_type=sa.BigInteger)
    message: str = Field(max_length=2048)
    source: str = Field(max_length=2048)
    line: int
    col: int
    stack: str = Field(max_length=4096)
    url: str = Field(max_length=2048)
    page_group: str = Field(max_length=256)
    device: str = Field(max_length=8)
    browser: str = Field(max_length=32)
    is_bot: bool = False


class Rollup(SQLModel, table=True):
    """Aggregate of one metric's values for one hour ('h') or UTC day ('d') and one segment
    (page group, device, navigation type, connection). Queries merge the sketches of
    whatever rollups a range and filter select; they never average percentiles."""

    __tablename__ = "rollup"
    __table_args__ = (
        sa.UniqueConstraint(
            "site_id", "period", "metric", "page_group", "device", "nav", "connection", "start_ms",
            name="uq_rollup_segment",
        ),
        sa.Index("ix_rollup_site_period_metric_start", "site_id", "period", "metric", "start_ms"),
    )  # fmt: skip
    # Queries name one cube cell by equality and a range of start_ms: with start_ms last in the
    # unique index, that is one contiguous range. The job rebuilds a whole period (every cell of
    # an hour or day) and retention cuts by time: those use (site_id, period, metric, start_ms).

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    site_id: int = Field(foreign_key="site.id")
    period: str = Field(max_length=1)
    metric: str = Field(max_length=8)
    start_ms: int = Field(sa_type=sa.BigInteger)
    page_group: str = Field(max_length=256)
    device: str = Field(max_length=8)
    nav: str = Field(max_length=24)
    connection: str = Field(max_length=16)
    count: int
    good: int
    poor: int
    sketch: bytes = Field(sa_type=sa.LargeBinary)


class RollupState(SQLModel, table=True):
    """One row: hours before ``rolled_until_ms`` have rollups (unless marked dirty)."""

    __tablename__ = "rollup_state"

    id: int = Field(default=1, primary_key=True)
    rolled_until_ms: int = Field(sa_type=sa.BigInteger)


class DirtyHour(SQLModel, table=True):
    """A closed hour that received rows after it closed (a late or re-reported value). The
    ingest writer marks it in the same transaction as the rows, queries read it raw until the
    rollup job has rebuilt it, and the job then clears marks no newer than its rebuild."""

    __tablename__ = "dirty_hour"

    site_id: int = Field(primary_key=True, foreign_key="site.id")
    metric: str = Field(primary_key=True, max_length=8)
    hour_ms: int = Field(primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={"autoincrement": False})
    marked_ms: int = Field(sa_type=sa.BigInteger)


class Check(SQLModel, table=True):
    """A synthetic check: a Playwright flow (declarative steps, or a Python file from the flows
    directory) or a Lighthouse audit of one URL, on a schedule."""

    __tablename__ = "synthetic_check"  # "check" is reserved in SQL
    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    kind: str = Field(max_length=16)  # "flow" or "lighthouse"
    target: str = Field(max_length=2048)  # base URL (flow) or audited URL (lighthouse)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    interval_s: int | None = None
    cron: str | None = Field(default=None, max_length=100)
    jitter_s: int = 0
    device: str = Field(default="desktop", max_length=16)
    throttling: str = Field(default="none", max_length=32)
    steps: list[dict[str, Any]] | None = Field(default=None, sa_type=JsonType)
    flow_file: str | None = Field(default=None, max_length=256)
    runs: int = 3  # Lighthouse runs per audit
    enabled: bool = True
    created_ms: int = Field(sa_type=sa.BigInteger)


class CheckRun(SQLModel, table=True):
    """One execution of a check. ``result`` is the probe's own JSON; artifacts live on disk
    under FIELDLAB_DATA_DIR/artifacts/<run id>/."""

    __tablename__ = "check_run"
    __table_args__ = (sa.Index("ix_check_run_check_started", "check_id", "started_ms"), NEVER_REUSED)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    check_id: int = Field(foreign_key="synthetic_check.id")
    status: str = Field(max_length=16)  # running, passed, failed, flaky, skipped, error
    trigger: str = Field(max_length=16)  # schedule, manual
    started_ms: int = Field(sa_type=sa.BigInteger)
    finished_ms: int | None = Field(default=None, sa_type=sa.BigInteger)
    duration_ms: float | None = None
    error: str | None = Field(default=None, max_length=2048)
    result: dict[str, Any] | None = Field(default=None, sa_type=JsonType)


class DeployMarker(SQLModel, table=True):
    """A deploy of a site: the line on charts and the start of a regression comparison."""

    __tablename__ = "deploy_marker"
    __table_args__ = (sa.Index("ix_deploy_marker_site_ts", "site_id", "ts"), NEVER_REUSED)

    id: int | None = Field(default=None, primary_key=True)
    site_id: int = Field(foreign_key="site.id")
    commit_sha: str = Field(max_length=64)  # "commit" is a keyword in SQL
    branch: str = Field(max_length=200)
    message: str = Field(default="", max_length=1000)
    ts: int = Field(sa_type=sa.BigInteger)
    created_ms: int = Field(sa_type=sa.BigInteger)


class BudgetStatus(SQLModel, table=True):
    """One verdict of one budget at one evaluation (the budget status history)."""

    __tablename__ = "budget_status"
    __table_args__ = (
        sa.Index("ix_budget_status_scope_budget_at", "scope", "budget_id", "evaluated_ms"),
        sa.Index("ix_budget_status_scope_at", "scope", "evaluated_ms"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    # "site:<id>" for field budgets, "check:<id>" for a check's runs, or a caller's own label.
    scope: str = Field(max_length=64)
    budget_id: str = Field(max_length=512)
    name: str = Field(max_length=512)
    status: str = Field(max_length=24)
    actual: float | None = None
    limit_value: float | None = None  # "limit" is reserved in SQL
    margin: float | None = None
    unit: str = Field(default="", max_length=16)
    samples: int | None = None
    detail: str = Field(default="", max_length=2048)
    run_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    evaluated_ms: int = Field(sa_type=sa.BigInteger)


class AlertState(SQLModel, table=True):
    """The alert state machine's memory for one budget (both bands, see app/budgets/alerts.py)."""

    __tablename__ = "alert_state"

    scope: str = Field(primary_key=True, max_length=64)
    budget_id: str = Field(primary_key=True, max_length=512)
    name: str = Field(max_length=512)
    summary: str = Field(max_length=16)  # ok, warning, failing
    bands: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)
    last_status: str = Field(max_length=24)
    updated_ms: int = Field(sa_type=sa.BigInteger)


class Webhook(SQLModel, table=True):
    """Where alert notifications go: generic JSON or a Slack-compatible incoming webhook."""

    __tablename__ = "webhook"
    __table_args__ = NEVER_REUSED

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    url: str = Field(max_length=2048)
    format: str = Field(max_length=8)  # json, slack
    # Only this scope's alerts ("site:3", "check:7"); empty: every scope.
    scope: str = Field(default="", max_length=64)
    # When set, JSON bodies are signed: X-Fieldlab-Signature: sha256=<hex HMAC of the body>.
    secret: str = Field(default="", max_length=200)
    enabled: bool = True
    created_ms: int = Field(sa_type=sa.BigInteger)


class WebhookDelivery(SQLModel, table=True):
    """One notification to one webhook and how its delivery went (the delivery log)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        # The same event is never sent twice to one webhook, even by two workers at once.
        sa.UniqueConstraint("webhook_id", "event_key", name="uq_webhook_delivery_event"),
        sa.Index("ix_webhook_delivery_created", "created_ms"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    webhook_id: int = Field(foreign_key="webhook.id")
    event_key: str = Field(max_length=700)
    event: str = Field(max_length=16)  # failing, recovered, still-failing, test
    scope: str = Field(max_length=64)
    budget_id: str = Field(max_length=512)
    status: str = Field(max_length=16)  # pending, delivered, failed
    attempts: int = 0
    http_status: int | None = None
    error: str | None = Field(default=None, max_length=1000)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)
    created_ms: int = Field(sa_type=sa.BigInteger)
    finished_ms: int | None = Field(default=None, sa_type=sa.BigInteger)


class LogEvent(SQLModel, table=True):
    """One searchable log event: a JS error occurrence, a synthetic console error or failed
    request, or a fieldlab warning. Written by app/search (never by ingest); the full-text index
    (SQLite FTS5 table ``log_event_fts``, PostgreSQL generated ``search`` tsvector column) is
    made by migration 0006 and kept in step by the database itself."""

    __tablename__ = "log_event"
    __table_args__ = (
        # An indexing job may read a source row twice; the second insert is ignored.
        sa.UniqueConstraint("kind", "source_id", "seq", name="uq_log_event_source"),
        sa.Index("ix_log_event_site_ts", "site_id", "ts", "id"),
        sa.Index("ix_log_event_ts", "ts", "id"),
        sa.Index("ix_log_event_fingerprint_ts", "fingerprint", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    site_id: int | None = Field(default=None, foreign_key="site.id")  # None: fieldlab's own
    kind: str = Field(max_length=16)  # js-error, console-error, failed-request, fieldlab
    level: str = Field(max_length=8)  # error, warning, critical
    ts: int = Field(sa_type=sa.BigInteger)
    fingerprint: str = Field(max_length=32)
    message: str = Field(max_length=2048)
    detail: str = Field(default="", max_length=4096)  # stack, logger and exception, request
    top_frame: str = Field(default="", max_length=512)
    url: str = Field(default="", max_length=2048)
    page_group: str = Field(default="", max_length=256)
    browser: str = Field(default="", max_length=32)
    # js_error id, or check_run id (with seq numbering its events); None for fieldlab's own.
    source_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    seq: int = 0


class SearchCursor(SQLModel, table=True):
    """How far the indexing job has read each source (highest js_error id, latest finished run)."""

    __tablename__ = "search_cursor"

    source: str = Field(primary_key=True, max_length=32)
    position: int = Field(sa_type=sa.BigInteger)


def table(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model, typed (Core statements are used on hot and bulk paths)."""
    t: sa.Table = model.__table__  # type: ignore[attr-defined]
    return t
