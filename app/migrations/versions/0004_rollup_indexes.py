"""rollup indexes for the query patterns; rollups rebuilt for the sketch's new ALPHA

Revision ID: 0004
Revises: 0003 (checks)
Create Date: 2026-11-27 03:40:00

* The unique index puts ``start_ms`` last: field queries give every segment column by equality
  and ``start_ms`` as a range, so 30 days of one cube cell are one contiguous index range
  instead of a walk over every cell of every hour.
* A plain (site_id, period, metric, start_ms) index serves the rollup job's reads and deletes
  of one period (all cells of an hour or a day) and retention.
* app/sketch.py's ALPHA went from 0.01 to 0.0095, which renumbers every bucket, so stored
  sketches cannot be merged with new ones. Rollups are derived data: they are deleted and the
  rollup watermark reset, and the next rollup run rebuilds them from the raw rows (rollups older
  than raw retention are not rebuilt).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEGMENT = ("page_group", "device", "nav", "connection")


def _rebuild_later() -> None:
    op.execute(sa.text("DELETE FROM rollup"))
    op.execute(sa.text("DELETE FROM rollup_state"))


def upgrade() -> None:
    _rebuild_later()
    with op.batch_alter_table("rollup") as batch:
        batch.drop_constraint("uq_rollup_segment", type_="unique")
        batch.create_unique_constraint(
            "uq_rollup_segment", ["site_id", "period", "metric", *SEGMENT, "start_ms"]
        )
        batch.create_index("ix_rollup_site_period_metric_start", ["site_id", "period", "metric", "start_ms"])


def downgrade() -> None:
    _rebuild_later()
    with op.batch_alter_table("rollup") as batch:
        batch.drop_index("ix_rollup_site_period_metric_start")
        batch.drop_constraint("uq_rollup_segment", type_="unique")
        batch.create_unique_constraint(
            "uq_rollup_segment", ["site_id", "period", "metric", "start_ms", *SEGMENT]
        )
