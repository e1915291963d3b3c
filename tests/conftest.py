"""Shared fixtures: real SQLite and PostgreSQL databases, the app in-process, and a real server
subprocess on a free port.

PostgreSQL: each test session creates its own database (``fieldlab_test_<random>``) on
127.0.0.1:5432, migrates it once, empties it between tests, and drops it at the end, so runs
never see each other's data. SQLite: a migrated template file is copied per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.db import Database, upgrade_database
from app.server import create_app

ROOT = Path(__file__).resolve().parent.parent
PG_HOST = os.environ.get("FIELDLAB_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
ADMIN = "test-admin-token"
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
)
MOBILE_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Mobile Safari/537.36"
)
TABLES = (
    "log_event",
    "search_cursor",
    "webhook_delivery",
    "webhook",
    "alert_state",
    "budget_status",
    "deploy_marker",
    "measurement",
    "js_error",
    "rollup",
    "rollup_state",
    "dirty_hour",
    "check_run",
    "synthetic_check",
    "api_token",
    "site",
)


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    name = f"fieldlab_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_dsn(f"{PG_HOST}/postgres"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_HOST} is required for the test suite: {exc}")
    url = f"{PG_HOST}/{name}"
    upgrade_database(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_database(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """An empty, migrated database; tests using it run once per backend."""
    if request.param == "sqlite":
        path = tmp_path / "fieldlab.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")

    async def truncate() -> None:
        conn = await asyncpg.connect(_dsn(url))
        try:
            await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        finally:
            await conn.close()

    asyncio.run(truncate())
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        admin_token=ADMIN,
        data_dir=str(tmp_path / "data"),  # artifacts, UI secret: never the checkout's own data/
        static_dir=str(ROOT / "static"),
        site_cache_ttl_s=0.0,
        # Tests send bursts from one address; the rate-limit test sets its own small limits.
        rate_limit_per_ip=100_000,
        rate_limit_per_site=100_000,
        rate_limit_api_per_ip=100_000,
    )


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings)
    yield database
    await database.dispose()


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as c:
        c.headers["authorization"] = f"Bearer {ADMIN}"
        yield c


async def make_site(client: AsyncTestClient[Litestar] | httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body = {"name": f"site-{uuid.uuid4().hex[:6]}", "origins": ["https://shop.example"], **body}
    r = await client.post("/api/v1/sites", json=body, headers={"authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text
    site: dict[str, Any] = r.json()
    return site


async def make_token(client: AsyncTestClient[Litestar], scope: str, site_id: int | None = None) -> str:
    """A new stored token (created with the admin token); its secret value."""
    r = await client.post(
        "/api/v1/tokens",
        json={"scope": scope, "site_id": site_id},
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 201, r.text
    value: str = r.json()["token"]
    return value


def beacon_headers(origin: str = "https://shop.example", ua: str = BROWSER_UA) -> dict[str, str]:
    return {"content-type": "text/plain;charset=UTF-8", "origin": origin, "user-agent": ua}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """`fieldlab serve` as a real subprocess, as an operator runs it."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = replace(settings, port=free_port())
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_env: dict[str, str] = {}  # more FIELDLAB_* variables for this server
        self.extra_args: list[str] = []  # more `serve` options, e.g. ["--config", PATH]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDLAB_")}
        env.update(
            FIELDLAB_DATABASE_URL=self.settings.database_url,
            FIELDLAB_ADMIN_TOKEN=self.settings.admin_token,
            FIELDLAB_STATIC_DIR=self.settings.static_dir,
            FIELDLAB_RATE_LIMIT_PER_IP="100000",
            FIELDLAB_RATE_LIMIT_PER_SITE="100000",
            FIELDLAB_RATE_LIMIT_API_PER_IP="100000",
            FIELDLAB_DEMO="1" if self.settings.demo else "0",
            # The server's own files (UI secret, sessions, artifacts) beside its log, never in the
            # checkout's data/ that `make run` uses, unless the test gave a directory.
            FIELDLAB_DATA_DIR=(
                self.settings.data_dir
                if os.path.isabs(self.settings.data_dir)
                else str(self.log_path.parent / "data")
            ),
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 20.0) -> None:
        log = self.log_path.open("ab")
        command = ["serve", "--host", "127.0.0.1", "--port", str(self.settings.port), *self.extra_args]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", *command],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code


@pytest.fixture
def live_server(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(settings, tmp_path / "server.log")
    server.start()
    yield server
    server.stop()
