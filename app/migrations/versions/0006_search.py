"""searchable logs: log events with a full-text index, and the indexing job's cursors

Revision ID: 0006
Revises: 0005 (budgets and alerts)
Create Date: 2026-11-27 04:45:00

* SQLite: an external-content FTS5 table over log_event(message, detail), kept in step by
  triggers, so a delete by retention also leaves the index.
* PostgreSQL: a generated ``search`` tsvector column with a GIN index. Punctuation becomes
  spaces before ``to_tsvector('simple', …)``: PostgreSQL's parser would otherwise keep
  ``checkout.js`` or ``a/b`` as one token, where FTS5's unicode61 tokenizer splits them; both
  backends then find the same words. ``simple``: no stemming, identifiers stay as written.
* Time indexes end in ``id``: events are listed newest first by (ts, id), the keyset of their
  pages, so a page is an index range on PostgreSQL too (SQLite has the rowid in every index).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PG_SEARCH = (
    "to_tsvector('simple'::regconfig, regexp_replace(message || ' ' || detail, '[^[:alnum:]]+', ' ', 'g'))"
)

_SQLITE_FTS = (
    "CREATE VIRTUAL TABLE log_event_fts USING fts5(message, detail, content='log_event', content_rowid='id')",
    """CREATE TRIGGER log_event_fts_insert AFTER INSERT ON log_event BEGIN
         INSERT INTO log_event_fts(rowid, message, detail) VALUES (new.id, new.message, new.detail);
       END""",
    """CREATE TRIGGER log_event_fts_delete AFTER DELETE ON log_event BEGIN
         INSERT INTO log_event_fts(log_event_fts, rowid, message, detail)
         VALUES ('delete', old.id, old.message, old.detail);
       END""",
    """CREATE TRIGGER log_event_fts_update AFTER UPDATE ON log_event BEGIN
         INSERT INTO log_event_fts(log_event_fts, rowid, message, detail)
         VALUES ('delete', old.id, old.message, old.detail);
         INSERT INTO log_event_fts(rowid, message, detail) VALUES (new.id, new.message, new.detail);
       END""",
)


def upgrade() -> None:
    op.create_table(
        "log_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(length=2048), nullable=False),
        sa.Column("detail", sa.String(length=4096), nullable=False),
        sa.Column("top_frame", sa.String(length=512), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("page_group", sa.String(length=256), nullable=False),
        sa.Column("browser", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "source_id", "seq", name="uq_log_event_source"),
    )
    with op.batch_alter_table("log_event") as batch:
        batch.create_index("ix_log_event_site_ts", ["site_id", "ts", "id"], unique=False)
        batch.create_index("ix_log_event_ts", ["ts", "id"], unique=False)
        batch.create_index("ix_log_event_fingerprint_ts", ["fingerprint", "ts"], unique=False)
    op.create_table(
        "search_cursor",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"ALTER TABLE log_event ADD COLUMN search tsvector GENERATED ALWAYS AS ({_PG_SEARCH}) STORED"
        )
        op.execute("CREATE INDEX ix_log_event_search ON log_event USING gin (search)")
    else:
        for statement in _SQLITE_FTS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for name in ("log_event_fts_insert", "log_event_fts_delete", "log_event_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS log_event_fts")
    op.drop_table("search_cursor")
    with op.batch_alter_table("log_event") as batch:
        batch.drop_index("ix_log_event_fingerprint_ts")
        batch.drop_index("ix_log_event_ts")
        batch.drop_index("ix_log_event_site_ts")
    op.drop_table("log_event")
