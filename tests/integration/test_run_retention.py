"""Run retention on SQLite and PostgreSQL, through the server's retention job: run rows after
FIELDLAB_RUN_RETENTION_DAYS, artifact directories after FIELDLAB_ARTIFACT_RETENTION_DAYS (and
those of runs that no longer exist), and what the API and the dashboard say about a run whose
artifacts are gone."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import checks as check_data
from app.config import Settings, SettingsError
from app.db import Database
from app.server import create_app
from tests.conftest import ADMIN
from tests.integration.ui_data import sign_in

DAY_MS = 86_400_000
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def add_run(db: Database, data_dir: Path, check_id: int, age_days: float) -> int:
    run = await check_data.start_run(db=db, check_id=check_id, trigger="schedule")
    assert run.id is not None
    result = {"status": "passed", "artifacts": ["attempt-1/step-01-home.jpg", "attempt-1/trace.zip"],
              "steps": [{"name": "home", "status": "passed", "started_at": run.started_ms, "duration_ms": 480.0,
                         "screenshot": "attempt-1/step-01-home.jpg"}]}  # fmt: skip
    await check_data.finish_run(db=db, run_id=run.id, status="passed", result=result)
    async with db.write_conn() as conn:
        started = int(time.time() * 1000 - age_days * DAY_MS)
        await conn.execute(
            sa.text("UPDATE check_run SET started_ms = :s WHERE id = :i"), {"s": started, "i": run.id}
        )
    attempt = data_dir / "artifacts" / str(run.id) / "attempt-1"
    attempt.mkdir(parents=True)
    (attempt / "trace.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    (attempt / "step-01-home.jpg").write_bytes(PNG)
    return run.id


async def test_old_runs_and_artifacts_go_and_the_run_says_so(settings: Settings, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = replace(settings, data_dir=str(data_dir), scheduler=False)
    db = Database(settings)
    async with db.write() as session:
        check = check_data.Check(name="home", kind="flow", target="https://shop.example", interval_s=300,
                                 created_ms=0)  # fmt: skip
        session.add(check)
    assert check.id is not None
    runs = {age: await add_run(db, data_dir, check.id, age) for age in (500, 100, 29)}
    (data_dir / "artifacts" / "987654").mkdir()  # a run gone (started while its check was deleted)
    (data_dir / "artifacts" / "notes").mkdir()  # not a run's: left alone

    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(app=create_app(settings), base_url="http://127.0.0.1:8000") as client:
        client.headers["authorization"] = f"Bearer {ADMIN}"
        job = await client.post("/api/v1/admin/jobs/retention/run")
        assert job.status_code == 200, job.text

        left = {p.name for p in (data_dir / "artifacts").iterdir()}
        assert left == {str(runs[29]), "notes"}
        assert (await client.get(f"/api/v1/runs/{runs[500]}")).status_code == 404  # past 400 days
        kept = [r["id"] for r in (await client.get(f"/api/v1/checks/{check.id}/runs")).json()]
        assert sorted(kept) == sorted([runs[100], runs[29]])

        old = (await client.get(f"/api/v1/runs/{runs[100]}")).json()
        assert (old["artifacts_expired"], old["artifact_urls"], old["status"]) == (True, [], "passed")
        gone = await client.get(f"/api/v1/runs/{runs[100]}/artifacts/attempt-1/trace.zip")
        assert gone.status_code == 410
        assert "removed after 30 days (FIELDLAB_ARTIFACT_RETENTION_DAYS)" in gone.json()["detail"]
        assert (await client.get(f"/api/v1/runs/{runs[100]}/artifacts/nothing.txt")).status_code == 404

        new = (await client.get(f"/api/v1/runs/{runs[29]}")).json()
        assert new["artifacts_expired"] is False
        assert len(new["artifact_urls"]) == 2
        for url in new["artifact_urls"]:
            assert (await client.get(url)).status_code == 200, url

        await sign_in(client, ADMIN)
        page = (await client.get(f"/ui/runs/{runs[100]}")).text
        assert 'id="artifacts-expired"' in page
        assert "step-01-home.jpg" not in page  # no dead image links
        assert (await client.get(f"/ui/runs/{runs[100]}/artifacts/attempt-1/trace.zip")).status_code == 410
        fresh = (await client.get(f"/ui/runs/{runs[29]}")).text
        assert 'id="artifacts-expired"' not in fresh
        assert "step-01-home.jpg" in fresh

        # Nothing more to do the second time.
        assert (await client.post("/api/v1/admin/jobs/retention/run")).status_code == 200
        assert {p.name for p in (data_dir / "artifacts").iterdir()} == {str(runs[29]), "notes"}
    await db.dispose()


async def test_deleting_a_check_removes_its_runs_artifacts_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    db = Database(replace(settings, data_dir=str(data_dir)))
    ids = []
    for name in ("home", "search"):
        async with db.write() as session:
            check = check_data.Check(name=name, kind="flow", target="https://shop.example", interval_s=300,
                                     created_ms=0)  # fmt: skip
            session.add(check)
        assert check.id is not None
        ids.append(check.id)
    home = [await add_run(db, data_dir, ids[0], age) for age in (2, 1)]
    search = await add_run(db, data_dir, ids[1], 1)
    assert await check_data.delete_check(db=db, check_id=ids[0])
    assert {p.name for p in (data_dir / "artifacts").iterdir()} == {str(search)}
    assert [await check_data.get_run(db=db, run_id=r) for r in home] == [None, None]
    assert await check_data.get_run(db=db, run_id=search) is not None
    await db.dispose()


@pytest.mark.parametrize("name", ["run_retention_days", "artifact_retention_days"])
def test_retention_days_must_be_positive(name: str) -> None:
    with pytest.raises(SettingsError, match=f"FIELDLAB_{name.upper()}=0 must be greater than 0"):
        Settings(**{name: 0})  # type: ignore[arg-type]
