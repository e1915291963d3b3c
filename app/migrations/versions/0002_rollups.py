"""rollups

Revision ID: 0002
Revises: 0001 (initial schema)
Create Date: 2026-11-26 19:50:04.854527
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rolled_until_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "dirty_hour",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=8), nullable=False),
        sa.Column("hour_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("marked_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["site.id"],
        ),
        sa.PrimaryKeyConstraint("site_id", "metric", "hour_ms"),
    )
    op.create_table(
        "rollup",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=1), nullable=False),
        sa.Column("metric", sa.String(length=8), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("page_group", sa.String(length=256), nullable=False),
        sa.Column("device", sa.String(length=8), nullable=False),
        sa.Column("nav", sa.String(length=24), nullable=False),
        sa.Column("connection", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("good", sa.Integer(), nullable=False),
        sa.Column("poor", sa.Integer(), nullable=False),
        sa.Column("sketch", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["site.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "site_id",
            "period",
            "metric",
            "start_ms",
            "page_group",
            "device",
            "nav",
            "connection",
            name="uq_rollup_segment",
        ),
    )


def downgrade() -> None:
    op.drop_table("rollup")
    op.drop_table("dirty_hour")
    op.drop_table("rollup_state")
