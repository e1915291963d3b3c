"""`fieldlab marker add|list|delete`: deploy markers from a CI job or a shell.

With ``--server URL --token T`` it talks to a running fieldlab over the API (what CI does);
without, it writes to FIELDLAB_DATABASE_URL directly (an operator on the box).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from app import sites as site_data
from app.budgets import store
from app.config import Settings
from app.db import Database, ensure_schema


class MarkerError(Exception):
    """A one-line reason the command could not do its work (exit 2)."""


def _parse_time(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MarkerError(f"--time: {value!r} is not an ISO 8601 time") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


# --- over the API ---------------------------------------------------------------------------


def _client(server: str, token: str) -> httpx.Client:
    if not token:
        raise MarkerError("--token is needed with --server")
    return httpx.Client(base_url=server.rstrip("/"), headers={"authorization": f"Bearer {token}"}, timeout=30)


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise MarkerError(f"server answered {response.status_code}: {str(detail)[:300]}")
    return response.json()


def _remote_site(client: httpx.Client, site: str | None) -> int:
    if site and site.isdigit():
        return int(site)
    found = _answer(client.get("/api/v1/sites"))
    matches = [s for s in found if site in (None, s["name"])]
    if len(matches) != 1:
        names = ", ".join(s["name"] for s in found) or "none"
        raise MarkerError(f"--site: give a site id or name (sites: {names})")
    return int(matches[0]["id"])


def _remote(server: str, token: str, fn: Any) -> Any:
    try:
        with _client(server, token) as client:
            return fn(client)
    except httpx.HTTPError as exc:
        raise MarkerError(f"{server} unreachable: {exc}") from None


# --- directly on the database ---------------------------------------------------------------


def _local(settings: Settings, fn: Any) -> Any:
    if settings.is_sqlite and settings.auto_migrate:
        ensure_schema(settings.database_url)

    async def run() -> Any:
        db = Database(settings)
        try:
            return await fn(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


async def _local_site(db: Database, site: str | None) -> int:
    rows = await site_data.list_sites(db=db)
    matches = [s for s in rows if site is None or site in (s.name, str(s.id))]
    if len(matches) != 1 or matches[0].id is None:
        names = ", ".join(s.name for s in rows) or "none"
        raise MarkerError(f"--site: give a site id or name (sites: {names})")
    return matches[0].id


# --- commands -------------------------------------------------------------------------------


def add(
    *,
    commit: str,
    branch: str,
    site: str | None,
    message: str,
    time: str | None,
    server: str | None,
    token: str,
    settings: Settings,
) -> dict[str, Any]:
    """Add a marker; returns it as the API shows it."""
    when = _parse_time(time)
    if server:

        def post(client: httpx.Client) -> Any:
            site_id = _remote_site(client, site)
            body = {"commit": commit, "branch": branch, "message": message}
            if when:
                body["time"] = when
            return _answer(client.post(f"/api/v1/sites/{site_id}/markers", json=body))

        out: dict[str, Any] = _remote(server, token, post)
        return out

    async def insert(db: Database) -> dict[str, Any]:
        site_id = await _local_site(db, site)
        ts = None if when is None else int(datetime.fromisoformat(when).timestamp() * 1000)
        try:
            m = await store.add_marker(
                db=db, site_id=site_id, commit=commit, branch=branch, message=message, ts_ms=ts
            )
        except site_data.InvalidInput as exc:
            raise MarkerError(str(exc)) from None
        return store.marker_dict(m)

    result: dict[str, Any] = _local(settings, insert)
    return result


def list_(
    *, site: str | None, limit: int, server: str | None, token: str, settings: Settings
) -> list[dict[str, Any]]:
    if server:

        def get(client: httpx.Client) -> Any:
            site_id = _remote_site(client, site)
            return _answer(client.get(f"/api/v1/sites/{site_id}/markers", params={"limit": limit}))

        rows: list[dict[str, Any]] = _remote(server, token, get)
        return rows

    async def read(db: Database) -> list[dict[str, Any]]:
        site_id = await _local_site(db, site)
        return [store.marker_dict(m) for m in await store.list_markers(db=db, site_id=site_id, limit=limit)]

    local_rows: list[dict[str, Any]] = _local(settings, read)
    return local_rows


def delete(*, marker_id: int, site: str | None, server: str | None, token: str, settings: Settings) -> int:
    """Delete a marker recorded by mistake; returns the site id. MarkerError if there is none."""
    if server:

        def remove(client: httpx.Client) -> int:
            site_id = _remote_site(client, site)
            response = client.delete(f"/api/v1/sites/{site_id}/markers/{marker_id}")
            if response.status_code != 204:
                _answer(response)  # raises with the server's reason
            return site_id

        remote_id: int = _remote(server, token, remove)
        return remote_id

    async def remove_local(db: Database) -> int:
        site_id = await _local_site(db, site)
        if not await store.delete_marker(db=db, site_id=site_id, marker_id=marker_id):
            raise MarkerError(f"site {site_id} has no marker with id {marker_id}")
        return site_id

    local_id: int = _local(settings, remove_local)
    return local_id


def show(rows: list[dict[str, Any]], *, as_json: bool, console: Console) -> None:
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("id", "time", "commit", "branch", "message")
    for r in rows:
        table.add_row(str(r["id"]), r["time"], r["commit"][:12], r["branch"], r["message"][:60])
    console.print(table)
