"""Migration 0007 on both backends: ids of sites, checks, runs, markers, webhooks and tokens are
never handed out twice (SQLite reused the highest id after a deletion, so a budgets file's
``site:ID`` or a CI job's marker id could point at a newcomer). The rebuild keeps every row, its
id and its references, and it downgrades cleanly."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from app import db as db_module
from app.config import Settings
from app.db import Database, alembic_config, ensure_schema, upgrade_database
from app.site_delete import delete_site
from app.sites import create_site
from tests.integration.test_rollup_migration import _run, empty_url

__all__ = ["empty_url"]  # the fixture, shared


def _seed(conn: sa.Connection) -> None:
    for sid in (1, 2):
        conn.execute(sa.text("INSERT INTO site (id, name, key, origins, page_groups, query_allowlist, created_ms) "
                             f"VALUES ({sid}, 's{sid}', 'k{sid}', '[]', '[]', '[]', 0)"))  # fmt: skip
    conn.execute(sa.text(
        "INSERT INTO synthetic_check (id, name, kind, target, site_id, jitter_s, device, throttling, runs, enabled,"
        " created_ms) VALUES (5, 'home', 'flow', 'https://s.example', 2, 0, 'desktop', 'none', 1, true, 0)"
    ))  # fmt: skip
    conn.execute(sa.text("INSERT INTO check_run (id, check_id, status, trigger, started_ms) "
                         "VALUES (9, 5, 'passed', 'manual', 0)"))  # fmt: skip
    conn.execute(sa.text("INSERT INTO deploy_marker (id, site_id, commit_sha, branch, message, ts, created_ms) "
                         "VALUES (4, 2, 'abc1234', 'main', '', 0, 0)"))  # fmt: skip
    if conn.dialect.name == "postgresql":  # rows inserted with their ids leave the sequences behind
        for t in ("site", "synthetic_check", "check_run", "deploy_marker"):
            conn.execute(
                sa.text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))")
            )


def _rows(conn: sa.Connection) -> list[tuple[object, ...]]:
    return [
        *conn.execute(sa.text("SELECT id, name FROM site ORDER BY id")),
        *conn.execute(sa.text("SELECT id, site_id FROM synthetic_check")),
        *conn.execute(sa.text("SELECT id, check_id FROM check_run")),
        *conn.execute(sa.text("SELECT id, site_id FROM deploy_marker")),
    ]


def _delete_newest_and_add(conn: sa.Connection) -> list[int]:
    """Delete the newest row of each table, add one: its id must be a new one."""
    for sql in ("DELETE FROM check_run", "DELETE FROM deploy_marker", "DELETE FROM synthetic_check",
                "DELETE FROM site WHERE id = 2"):  # fmt: skip
        conn.execute(sa.text(sql))
    site = conn.execute(sa.text(
        "INSERT INTO site (name, key, origins, page_groups, query_allowlist, created_ms) "
        "VALUES ('new', 'k-new', '[]', '[]', '[]', 0) RETURNING id"
    )).scalar_one()  # fmt: skip
    check = conn.execute(sa.text(
        "INSERT INTO synthetic_check (name, kind, target, site_id, jitter_s, device, throttling, runs, enabled,"
        " created_ms) VALUES ('home', 'flow', 'https://s.example', 1, 0, 'desktop', 'none', 1, true, 0) RETURNING id"
    )).scalar_one()  # fmt: skip
    run = conn.execute(sa.text("INSERT INTO check_run (check_id, status, trigger, started_ms) "
                               f"VALUES ({check}, 'passed', 'manual', 0) RETURNING id")).scalar_one()  # fmt: skip
    return [site, check, run]


def _fk_problems(conn: sa.Connection) -> list[tuple[object, ...]]:
    if conn.dialect.name != "sqlite":
        return []
    return list(conn.execute(sa.text("PRAGMA foreign_key_check")))


def _id_diffs(conn: sa.Connection) -> list[object]:
    names = ("'site'", "'api_token'", "'synthetic_check'", "'check_run'", "'deploy_marker'", "'webhook'")
    diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    return [d for d in diffs if any(n in repr(d) for n in names)]


def test_0007_keeps_rows_and_ids_are_never_reused(empty_url: str) -> None:
    upgrade_database(empty_url, "0006")
    _run(empty_url, _seed)
    before = _run(empty_url, _rows)
    upgrade_database(empty_url, "0007")
    assert _run(empty_url, _rows) == before
    assert _run(empty_url, _fk_problems) == []
    assert _run(empty_url, _id_diffs) == []  # the rebuilt tables still match the models
    assert _run(empty_url, _delete_newest_and_add) == [3, 6, 10]  # not 2, 5, 9

    command.downgrade(alembic_config(empty_url), "0006")
    upgrade_database(empty_url, "0007")
    assert _run(empty_url, _rows)[:2] == [(1, "s1"), (3, "new")]


async def test_a_deleted_sites_id_is_not_given_to_the_next_site(settings: Settings) -> None:
    db = Database(settings)
    try:
        first = await create_site(db=db, name="old", origins=["https://old.example"])
        assert first.id is not None
        assert await delete_site(db=db, site_id=first.id) is not None
        second = await create_site(db=db, name="new", origins=["https://new.example"])
        assert second.id is not None
        assert second.id > first.id
    finally:
        await db.dispose()


def test_ensure_schema_upgrades_only_what_is_behind(empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's start-up check: a new or older database is upgraded, one at the newest revision
    is left alone without an Alembic run (on SQLite, read with the standard library)."""
    ensure_schema(empty_url)  # nothing there yet
    assert (
        _run(empty_url, _version) == ScriptDirectory.from_config(alembic_config(empty_url)).get_current_head()
    )
    command.downgrade(alembic_config(empty_url), "0006")
    ensure_schema(empty_url)
    assert _run(empty_url, _version) == "0007"
    if empty_url.startswith("sqlite"):

        def no_alembic(*_: object) -> None:
            raise AssertionError("Alembic ran for a database at head")

        monkeypatch.setattr(db_module, "upgrade_database", no_alembic)
        ensure_schema(empty_url)


def _version(conn: sa.Connection) -> str:
    return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())
