"""The `fieldlab` command line as an operator runs it: a real subprocess against a real
database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import documented_settings
from app.db import upgrade_database
from app.logs import configure_logging

ROOT = Path(__file__).resolve().parent.parent.parent


def run(
    database_url: str | None, *args: str, columns: int | None = None, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGS` with only the FIELDLAB_* variables given here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDLAB_") and k != "COLUMNS"}
    if database_url is not None:
        env["FIELDLAB_DATABASE_URL"] = database_url
    if columns is not None:
        env["COLUMNS"] = str(columns)
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(database_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    result = run(database_url, *args)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    async def go() -> list[tuple[Any, ...]]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in await conn.execute(sa.text(sql))]
        finally:
            await engine.dispose()

    return asyncio.run(go())


def add_shop(database_url: str) -> dict[str, Any]:
    result = ok(
        database_url,
        "sites", "add", "shop",
        "--origin", "https://Shop.example:443/",
        "--origin", "http://localhost:3000",
        "--page-group", "/product/*=/product/:id",
        "--page-group", "/blog/**",
        "--allow-query", "variant",
        "--json",
    )  # fmt: skip
    site: dict[str, Any] = json.loads(result.stdout)
    return site


# --- sites --------------------------------------------------------------------------------


def test_sites_add_prints_json_and_stores_the_site(database_url: str) -> None:
    site = add_shop(database_url)
    assert isinstance(site["id"], int)
    assert re.fullmatch(r"[A-Za-z0-9_-]{12,64}", site["key"])
    assert site["name"] == "shop"
    assert site["origins"] == ["http://localhost:3000", "https://shop.example"]  # normalised, sorted

    [(name, key, page_groups, allowlist)] = query(
        database_url, "SELECT name, key, page_groups, query_allowlist FROM site"
    )
    assert (name, key) == ("shop", site["key"])
    if isinstance(page_groups, str):  # JSON text on SQLite, decoded JSONB on PostgreSQL
        page_groups, allowlist = json.loads(page_groups), json.loads(allowlist)
    assert page_groups == [
        {"pattern": "/product/*", "group": "/product/:id"},
        {"pattern": "/blog/**", "group": "/blog/**"},
    ]
    assert allowlist == ["variant"]


def test_sites_add_without_json_prints_key_and_snippet(database_url: str) -> None:
    result = ok(database_url, "sites", "add", "blog", "--origin", "https://blog.example")
    [(key,)] = query(database_url, "SELECT key FROM site WHERE name = 'blog'")
    assert key in result.stdout
    assert f'data-site="{key}"' in result.stdout


def test_sites_add_duplicate_name_exits_2_naming_name(database_url: str) -> None:
    add_shop(database_url)
    result = run(database_url, "sites", "add", "shop", "--origin", "https://other.example", "--json")
    assert result.returncode == 2
    assert "name" in result.stderr
    assert "already exists" in result.stderr
    assert result.stdout == ""
    assert query(database_url, "SELECT count(*) FROM site") == [(1,)]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--origin", "ftp://shop.example"], "origins"),
        (["--origin", "shop.example"], "origins"),
        (["--origin", "https://shop.example/path"], "origins"),
        (["--origin", "https://shop.example", "--page-group", "product/*"], "page_groups[0].pattern"),
        (
            ["--origin", "https://shop.example", "--page-group", "/a", "--page-group", "/**/x"],
            "page_groups[1].pattern",
        ),
    ],
)
def test_sites_add_bad_input_exits_2_naming_the_field(database_url: str, args: list[str], field: str) -> None:
    result = run(database_url, "sites", "add", "bad", *args)
    assert result.returncode == 2, result.stderr
    assert field in result.stderr
    assert query(database_url, "SELECT count(*) FROM site") == [(0,)]


def test_sites_update_changes_only_what_it_is_told(database_url: str) -> None:
    site = add_shop(database_url)

    def stored() -> dict[str, Any]:
        [row] = query(database_url, "SELECT name, key, origins, page_groups, query_allowlist FROM site")
        decoded = [json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v for v in row]
        return dict(zip(("name", "key", "origins", "page_groups", "query_allowlist"), decoded, strict=True))

    before = stored()
    changed = json.loads(ok(database_url, "sites", "update", "shop", "--add-origin", "https://WWW.shop.example",
                            "--remove-origin", "http://localhost:3000/", "--json").stdout)  # fmt: skip
    assert changed["origins"] == ["https://shop.example", "https://www.shop.example"]
    assert stored() == {**before, "origins": changed["origins"]}  # name, key, rules, allowlist kept

    text = ok(database_url, "sites", "update", str(site["id"]), "--name", "shop2",
              "--page-group", "/p/*=/p/:id", "--no-allow-query").stdout  # fmt: skip
    for words in ("shop2", "/p/*=/p/:id", "query allowlist: (none)"):
        assert words in text
    assert stored() == {**before, "name": "shop2", "origins": changed["origins"],
                        "page_groups": [{"pattern": "/p/*", "group": "/p/:id"}], "query_allowlist": []}  # fmt: skip

    refused = [
        (["nope", "--name", "x"], "no site 'nope'"),
        (["shop2", "--remove-origin", "https://other.example"], "https://other.example is not allowed now"),
        (["shop2", "--origin", "shop.example"], "origins"),
        (["shop2", "--page-group", "p/*"], "page_groups[0].pattern"),
        (["shop2", "--page-group", "/a", "--no-page-groups"], "not both"),
    ]
    for args, words in refused:
        result = run(database_url, "sites", "update", *args)
        assert (result.returncode, words in result.stderr) == (2, True), (args, result.stderr)
    assert stored()["name"] == "shop2"


def test_sites_add_requires_an_origin(database_url: str) -> None:
    result = run(database_url, "sites", "add", "no-origin")
    assert result.returncode == 2
    assert "--origin" in result.stderr


def test_sites_list_json(database_url: str) -> None:
    assert json.loads(ok(database_url, "sites", "list", "--json").stdout) == []
    shop = add_shop(database_url)
    blog = json.loads(ok(database_url, "sites", "add", "blog", "-o", "https://blog.example", "--json").stdout)
    listed = json.loads(ok(database_url, "sites", "list", "--json").stdout)
    assert listed == [shop, blog]
    table = ok(database_url, "sites", "list").stdout
    assert "shop" in table
    assert "blog" in table


# --- tokens -------------------------------------------------------------------------------


def test_tokens_create_prints_token_once_and_stores_only_its_hash(database_url: str) -> None:
    result = ok(database_url, "tokens", "create", "--scope", "read", "--name", "dashboards")
    token = result.stdout.strip()
    assert re.fullmatch(r"flt_[A-Za-z0-9_-]{40,}", token), result.stdout
    assert result.stdout == token + "\n"  # only the token on stdout: TOKEN=$(fieldlab tokens create ...)
    assert "shown once" in result.stderr
    assert token not in result.stderr

    rows = query(database_url, "SELECT * FROM api_token")
    assert len(rows) == 1
    cells = [str(cell) for cell in rows[0]]
    assert hashlib.sha256(token.encode()).hexdigest() in cells
    assert not any(token in cell for cell in cells), "the plaintext token is stored"
    assert not any(token[10:20] in cell for cell in cells), "a long part of the secret is stored"
    [(scope, name, prefix)] = query(database_url, "SELECT scope, name, prefix FROM api_token")
    assert (scope, name) == ("read", "dashboards")
    assert token.startswith(prefix)


def test_tokens_create_admin_and_site_scoped(database_url: str) -> None:
    site = add_shop(database_url)
    admin = ok(database_url, "tokens", "create", "--scope", "admin").stdout.strip()
    scoped = ok(database_url, "tokens", "create", "--scope", "read", "--site", str(site["id"])).stdout.strip()
    ci = ok(database_url, "tokens", "create", "--scope", "deploy", "--site", str(site["id"])).stdout.strip()
    assert len({admin, scoped, ci}) == 3
    rows = query(database_url, "SELECT scope, site_id, token_hash FROM api_token ORDER BY id")
    assert rows == [
        ("admin", None, hashlib.sha256(admin.encode()).hexdigest()),
        ("read", site["id"], hashlib.sha256(scoped.encode()).hexdigest()),
        ("deploy", site["id"], hashlib.sha256(ci.encode()).hexdigest()),
    ]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scope", "root"], "scope"),
        (["--scope", ""], "scope"),
        (["--scope", "read", "--site", "999"], "site"),
    ],
)
def test_tokens_create_bad_input_exits_2(database_url: str, args: list[str], needle: str) -> None:
    result = run(database_url, "tokens", "create", *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "flt_" not in result.stdout
    assert query(database_url, "SELECT count(*) FROM api_token") == [(0,)]


def test_tokens_list_and_revoke(database_url: str) -> None:
    ci = ok(database_url, "tokens", "create", "--scope", "read", "--name", "ci").stdout.strip()
    ok(database_url, "tokens", "create", "--scope", "admin", "--name", "ops")
    [(ci_id,)] = query(database_url, "SELECT id FROM api_token WHERE name = 'ci'")

    listing = run(database_url, "tokens", "list", columns=200)
    assert listing.returncode == 0
    assert "ci" in listing.stdout
    assert "ops" in listing.stdout
    assert ci[:10] in listing.stdout  # the prefix, to recognise a token by
    assert ci not in listing.stdout

    revoked = ok(database_url, "tokens", "revoke", str(ci_id))
    assert "revoked" in revoked.stderr
    assert query(database_url, "SELECT name FROM api_token") == [("ops",)]

    again = run(database_url, "tokens", "revoke", str(ci_id))
    assert again.returncode == 2
    assert str(ci_id) in again.stderr
    after = ok(database_url, "tokens", "list").stdout
    assert ci[:10] not in after
    assert "ops" in after


def test_tokens_revoke_needs_a_number(database_url: str) -> None:
    result = run(database_url, "tokens", "revoke", "abc")
    assert result.returncode == 2


# --- db -----------------------------------------------------------------------------------


def test_db_upgrade_is_idempotent(database_url: str) -> None:
    add_shop(database_url)
    [(before,)] = query(database_url, "SELECT version_num FROM alembic_version")
    for _ in range(2):
        result = ok(database_url, "db", "upgrade")
        assert "head" in result.stderr
    assert query(database_url, "SELECT version_num FROM alembic_version") == [(before,)]
    assert query(database_url, "SELECT name FROM site") == [("shop",)]  # data untouched


def test_db_upgrade_creates_a_new_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
    ok(url, "db", "upgrade")
    tables = {name for (name,) in query(url, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"site", "api_token", "measurement", "js_error", "alembic_version"} <= tables


def test_db_upgrade_unreachable_database_exits_2_without_password() -> None:
    result = run("postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/nope", "db", "upgrade")
    assert result.returncode == 2
    assert "migration failed" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


# --- help and settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "commands"),
    [
        ([], ["serve", "settings", "db", "sites", "tokens"]),
        (["db"], ["upgrade"]),
        (["sites"], ["add", "list"]),
        (["tokens"], ["create", "list", "revoke"]),
    ],
)
def test_help_of_each_group(group: list[str], commands: list[str]) -> None:
    result = run(None, *group, "--help", columns=200)
    assert result.returncode == 0, result.stderr
    for command in commands:
        assert re.search(rf"\b{command}\b", result.stdout), f"{command} missing from {group} --help"


def test_group_without_command_shows_help() -> None:
    result = run(None, "tokens", columns=200)
    assert "revoke" in result.stdout + result.stderr


def test_settings_lists_every_variable_on_a_wide_terminal() -> None:
    result = run(None, "settings", columns=300)
    assert result.returncode == 0
    for name, default, _doc in documented_settings():
        assert name in result.stdout, name
        assert default[:20] in result.stdout, (name, default)


def test_settings_lists_every_variable_when_piped() -> None:
    result = run(None, "settings")
    assert result.returncode == 0
    missing = [name for name, _, _ in documented_settings() if name not in result.stdout]
    assert missing == []


def test_bad_setting_exits_2_naming_the_variable(database_url: str) -> None:
    result = run(database_url, "sites", "list", FIELDLAB_SQLITE_BUSY_TIMEOUT_MS="soon")
    assert result.returncode == 2
    assert "FIELDLAB_SQLITE_BUSY_TIMEOUT_MS" in result.stderr
    assert "'soon'" in result.stderr


def test_a_migration_logs_what_it_did_not_how_alembic_started(tmp_path: Path) -> None:
    """As `serve` logs it: Alembic's "Running upgrade" lines, not its plugin and dialect chatter."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("info", json_lines=True, stream=stream)
        upgrade_database(f"sqlite+aiosqlite:///{tmp_path}/fresh.db")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    said = [json.loads(line)["msg"] for line in stream.getvalue().splitlines()]
    assert any(m.startswith("Running upgrade  -> ") for m in said), said
    assert not [m for m in said if m.startswith(("setup plugin", "Context impl", "Will assume"))]
