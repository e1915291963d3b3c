"""ids are never reused on SQLite: AUTOINCREMENT for the tables whose ids are referenced from
outside their rows

Revision ID: 0007
Revises: 0006 (searchable logs)
Create Date: 2026-11-28 04:00:00

SQLite hands out max(id) + 1, so after a site or check was deleted the next one created took its
id, and a budgets file scoping ``site:3`` or ``check:7``, a CI job comparing against deploy
marker 12, a bookmarked run or an artifact directory would silently refer to the newcomer.
AUTOINCREMENT makes SQLite remember the highest id ever used. It needs the table rebuilt (batch
mode copies the rows with their ids; the copy sets the remembered high-water mark). PostgreSQL's
sequences never reuse ids: nothing to do there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("site", "api_token", "synthetic_check", "check_run", "deploy_marker", "webhook")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in TABLES:
        with op.batch_alter_table(
            name, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
