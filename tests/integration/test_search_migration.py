"""Migration 0006 on both backends: it matches the models, its full-text index works straight
after upgrade, and it downgrades cleanly."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from app.db import alembic_config, upgrade_database
from tests.integration.test_rollup_migration import _run, empty_url

__all__ = ["empty_url"]  # the fixture, shared


def _search_diffs(conn: sa.Connection) -> list[Any]:
    diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    # The FTS5 table (and its shadow tables) and the generated tsvector column are the
    # migration's own, outside the models.
    return [
        d for d in diffs
        if ("log_event" in repr(d) or "search_cursor" in repr(d)) and "log_event_fts" not in repr(d)
        and "'search'" not in repr(d)
    ]  # fmt: skip


def _insert_and_match(conn: sa.Connection) -> int:
    conn.execute(sa.text(
        "INSERT INTO log_event (kind, level, ts, fingerprint, message, detail, top_frame, url, page_group, browser,"
        " seq) VALUES ('fieldlab', 'warning', 1, 'f', 'disk full on /var/data', 'at checkout.js', '', '', '', '', 0)"
    ))  # fmt: skip
    if conn.dialect.name == "postgresql":
        sql = "SELECT count(*) FROM log_event WHERE search @@ to_tsquery('simple', 'checkout <-> js & var')"
    else:
        sql = "SELECT count(*) FROM log_event_fts WHERE log_event_fts MATCH '\"checkout js\" AND var'"
    return int(conn.execute(sa.text(sql)).scalar_one())


def _tables(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def test_0006_matches_the_models_indexes_text_and_downgrades(empty_url: str) -> None:
    upgrade_database(empty_url, "0006")
    assert _run(empty_url, _search_diffs) == []
    assert _run(empty_url, _insert_and_match) == 1
    command.downgrade(alembic_config(empty_url), "0005")
    assert not {"log_event", "search_cursor", "log_event_fts"} & _run(empty_url, _tables)
    upgrade_database(empty_url, "0006")
    assert {"log_event", "search_cursor"} <= _run(empty_url, _tables)
