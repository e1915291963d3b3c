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


class Site(SQLModel, table=True):
    __tablename__ = "site"

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
            "site_id", "period", "metric", "start_ms", "page_group", "device", "nav", "connection",
            name="uq_rollup_segment",
        ),
    )  # fmt: skip
    # The unique constraint's index serves every rollup query: site, period, metric, a range of
    # start_ms, then the segment columns filtered in the index itself.

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
    __table_args__ = (sa.Index("ix_check_run_check_started", "check_id", "started_ms"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    check_id: int = Field(foreign_key="synthetic_check.id")
    status: str = Field(max_length=16)  # running, passed, failed, flaky, skipped, error
    trigger: str = Field(max_length=16)  # schedule, manual
    started_ms: int = Field(sa_type=sa.BigInteger)
    finished_ms: int | None = Field(default=None, sa_type=sa.BigInteger)
    duration_ms: float | None = None
    error: str | None = Field(default=None, max_length=2048)
    result: dict[str, Any] | None = Field(default=None, sa_type=JsonType)


def table(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model, typed (Core statements are used on hot and bulk paths)."""
    t: sa.Table = model.__table__  # type: ignore[attr-defined]
    return t
