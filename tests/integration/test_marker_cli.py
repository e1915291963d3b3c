"""`fieldlab marker add|list|delete` as operators and CI run them: a real subprocess, on the database
directly and over a real server's API."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import ADMIN, LiveServer
from tests.integration.test_cli import ok, query, run


def test_marker_cli_on_the_database(database_url: str) -> None:
    site = json.loads(
        ok(database_url, "sites", "add", "shop", "--origin", "https://shop.example", "--json").stdout
    )
    added = ok(
        database_url,
        "marker",
        "add",
        "--commit",
        "abc1234",
        "--branch",
        "main",
        "--message",
        "ship it",
        "--time",
        "2026-11-20T08:00:00Z",
        "--json",
    )
    row = json.loads(added.stdout)
    assert row["commit"] == "abc1234"
    assert row["site_id"] == site["id"]
    assert row["time"] == "2026-11-20T08:00:00Z"
    ok(database_url, "marker", "add", "--commit", "def5678", "--branch", "main", "--site", "shop")
    assert query(database_url, "SELECT commit_sha, branch, message FROM deploy_marker ORDER BY ts") == [
        ("abc1234", "main", "ship it"),
        ("def5678", "main", ""),
    ]
    listed = json.loads(ok(database_url, "marker", "list", "--json").stdout)
    assert [m["commit"] for m in listed] == ["def5678", "abc1234"]

    deleted = ok(database_url, "marker", "delete", str(listed[0]["id"]), "--site", "shop")
    assert f"marker {listed[0]['id']} of site {site['id']} deleted" in deleted.stderr
    assert query(database_url, "SELECT commit_sha FROM deploy_marker") == [("abc1234",)]
    again = run(database_url, "marker", "delete", str(listed[0]["id"]))
    assert (again.returncode, f"no marker with id {listed[0]['id']}" in again.stderr) == (2, True)


def test_marker_cli_errors_exit_2_with_a_reason(database_url: str) -> None:
    bad = run(database_url, "marker", "add", "--commit", "abc", "--branch", "main")
    assert bad.returncode == 2
    assert "--site" in bad.stderr
    ok(database_url, "sites", "add", "a", "--origin", "https://a.example")
    ok(database_url, "sites", "add", "b", "--origin", "https://b.example")
    ambiguous = run(database_url, "marker", "add", "--commit", "abc", "--branch", "main")
    assert ambiguous.returncode == 2
    assert "sites: a, b" in ambiguous.stderr
    when = run(
        database_url, "marker", "add", "--commit", "abc", "--branch", "main", "--site", "a", "--time", "soon"
    )
    assert when.returncode == 2
    assert "--time" in when.stderr
    long = run(database_url, "marker", "add", "--commit", "x" * 70, "--branch", "main", "--site", "a")
    assert long.returncode == 2
    assert "commit" in long.stderr
    missing = run(database_url, "marker", "add", "--branch", "main")
    assert missing.returncode == 2
    assert "--commit" in missing.stderr


@pytest.mark.slow
def test_marker_cli_against_a_server(live_server: LiveServer) -> None:
    site = httpx.post(
        f"{live_server.url}/api/v1/sites",
        json={"name": "shop", "origins": ["https://s.example"]},
        headers={"authorization": f"Bearer {ADMIN}"},
    ).json()
    added = ok(
        None,
        "marker",
        "add",
        "--commit",
        "cafe123",
        "--branch",
        "main",
        "--site",
        "shop",
        "--server",
        live_server.url,
        "--token",
        ADMIN,
        "--json",
    )
    assert json.loads(added.stdout)["site_id"] == site["id"]
    listed = httpx.get(
        f"{live_server.url}/api/v1/sites/{site['id']}/markers", headers={"authorization": f"Bearer {ADMIN}"}
    ).json()
    assert [m["commit"] for m in listed] == ["cafe123"]
    remote = ["--site", "shop", "--server", live_server.url, "--token", ADMIN]
    gone = run(None, "marker", "delete", "999", *remote)
    assert (gone.returncode, "404" in gone.stderr, "no marker with id 999" in gone.stderr) == (2, True, True)
    ok(None, "marker", "delete", str(listed[0]["id"]), *remote)
    assert (
        httpx.get(
            f"{live_server.url}/api/v1/sites/{site['id']}/markers",
            headers={"authorization": f"Bearer {ADMIN}"},
        ).json()
        == []
    )
    denied = run(
        None,
        "marker",
        "add",
        "--commit",
        "c",
        "--branch",
        "main",
        "--site",
        str(site["id"]),
        "--server",
        live_server.url,
        "--token",
        "wrong",
    )
    assert denied.returncode == 2
    assert "401" in denied.stderr
    unreachable = run(
        None,
        "marker",
        "add",
        "--commit",
        "c",
        "--branch",
        "main",
        "--site",
        "1",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        ADMIN,
    )
    assert unreachable.returncode == 2
    assert "unreachable" in unreachable.stderr
