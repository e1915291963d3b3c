"""The dashboard under `fieldlab serve --workers 2`, on SQLite and PostgreSQL: a sign-in made on
one worker holds on the other (sessions in files under the data directory, one CSRF secret kept
there), and a restart signs nobody out. Each request opens a new connection, so both workers
take some; before, about half of them bounced to the sign-in page."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.ui.auth import stored_secret
from tests.conftest import ADMIN, LiveServer
from tests.integration.ui_data import csrf_of


def _sign_in(c: httpx.Client) -> None:
    page = c.get("/ui/login")
    assert page.status_code == 200
    r = c.post("/ui/login", data={"token": ADMIN, "_csrf_token": csrf_of(page.text), "next": "/ui/"})
    assert (r.status_code, r.headers.get("location")) == (303, "/ui/"), r.text[:300]


def test_a_sign_in_holds_on_every_worker_and_across_a_restart(settings: Settings, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = LiveServer(settings, tmp_path / "server.log")
    server.extra_args = ["--workers", "2"]
    server.extra_env = {"FIELDLAB_DATA_DIR": str(data)}
    fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection, so any worker, each time
    with httpx.Client(base_url=server.url, limits=fresh, timeout=10) as c:
        server.start(timeout=40)
        try:
            for _ in range(4):  # the form from one worker, posted to whichever takes the next
                c.cookies.clear()
                _sign_in(c)
            pages = [c.get("/ui/").status_code for _ in range(20)]
            assert pages == [200] * 20
        finally:
            server.stop()
        assert (data / "ui-secret").stat().st_mode & 0o777 == 0o600
        assert len(list((data / "ui-sessions").iterdir())) >= 1
        server.start(timeout=40)
        try:
            assert [c.get("/ui/").status_code for _ in range(6)] == [200] * 6
            c.post("/ui/logout", data={"_csrf_token": csrf_of(c.get("/ui/").text)})
            assert c.get("/ui/").status_code == 303  # signed out on every worker
        finally:
            server.stop()


def test_the_stored_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    first = stored_secret(tmp_path / "new" / "dir")
    assert len(first) == 64
    assert stored_secret(tmp_path / "new" / "dir") == first
    assert [p.name for p in (tmp_path / "new" / "dir").iterdir()] == ["ui-secret"]  # no temp file left
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ui-secret").write_text("short\n")
    with pytest.raises(ValueError, match="delete it to make a new one"):
        stored_secret(tmp_path / "bad")
