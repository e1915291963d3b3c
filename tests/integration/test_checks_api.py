"""The checks API on SQLite and PostgreSQL: CRUD, validation that names the field, target
safety (private and metadata addresses, other schemes), no code upload, auth.

These run the app in-process with the scheduler off; the runs themselves (real Chromium, real
Lighthouse, a real server) are in test_check_runs.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.config import Settings, SettingsError
from app.server import create_app
from tests.conftest import ADMIN, make_site

FLOW = "async def flow(page, step):\n    async with step('home'):\n        await page.goto('/')\n"
STEPS = [
    {"step": "home", "actions": [{"goto": "/"}, {"wait_for": "h1"}]},
    {"step": "search", "actions": [{"fill": {"selector": "#q", "value": "shoes"}}, {"press": {"selector": "#q", "key": "Enter"}}]},
    {"assert_text": {"selector": ".results", "text": "shoes"}},
]  # fmt: skip


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    root = tmp_path / "flows"
    (root / "nested").mkdir(parents=True)
    (root / "home.py").write_text(FLOW)
    (root / "nested" / "deep.py").write_text(FLOW)
    (tmp_path / "outside.py").write_text(FLOW)
    (root / "escape.py").symlink_to(tmp_path / "outside.py")  # a link out of the directory
    return root


@pytest.fixture
def settings(settings: Settings, flows: Path, tmp_path: Path) -> Settings:
    return replace(settings, flows_dir=str(flows), data_dir=str(tmp_path / "data"), scheduler=False)


@pytest.fixture
async def private_ok(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The same app with FIELDLAB_ALLOW_PRIVATE_TARGETS on."""
    async with AsyncTestClient(app=create_app(replace(settings, allow_private_targets=True))) as c:
        c.headers["authorization"] = f"Bearer {ADMIN}"
        yield c


def flow_check(name: str = "home", **over: Any) -> dict[str, Any]:
    return {"name": name, "kind": "flow", "target": "https://shop.example/", "steps": STEPS, **over}


async def test_crud_for_the_three_kinds_of_check(client: AsyncTestClient[Litestar]) -> None:
    site = await make_site(client)
    r = await client.post("/api/v1/checks", json=flow_check(site_id=site["id"], interval_s=900, jitter_s=30))
    assert r.status_code == 201, r.text
    declarative = r.json()
    assert declarative["steps"] == STEPS
    assert (declarative["device"], declarative["throttling"], declarative["site_id"]) == (
        "desktop", "none", site["id"]
    )  # fmt: skip
    r = await client.post("/api/v1/checks", json=flow_check("deep", steps=None, flow_file="nested/deep.py",
                                                            cron="*/5 * * * *", device="mobile",
                                                            throttling="mobile-slow-4g"))  # fmt: skip
    assert r.status_code == 201, r.text
    python = r.json()
    r = await client.post(
        "/api/v1/checks",
        json={"name": "lh", "kind": "lighthouse", "target": "https://shop.example/", "runs": 2},
    )
    assert r.status_code == 201, r.text
    lighthouse = r.json()
    assert (lighthouse["runs"], lighthouse["steps"], lighthouse["flow_file"]) == (2, None, None)

    listed = (await client.get("/api/v1/checks")).json()
    assert [c["name"] for c in listed] == ["home", "deep", "lh"]
    assert all(c["last_run"] is None for c in listed)

    # PATCH changes only what it names; a null clears the cron schedule.
    r = await client.patch(
        f"/api/v1/checks/{python['id']}", json={"cron": None, "interval_s": 60, "enabled": False}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["cron"], r.json()["interval_s"], r.json()["enabled"], r.json()["device"]) == (
        None, 60, False, "mobile"
    )  # fmt: skip
    # Switching a declarative check to a file needs the steps cleared: never both.
    r = await client.patch(f"/api/v1/checks/{declarative['id']}", json={"flow_file": "home.py"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("steps:")
    r = await client.patch(
        f"/api/v1/checks/{declarative['id']}", json={"flow_file": "home.py", "steps": None}
    )
    assert r.status_code == 200, r.text
    assert (await client.get(f"/api/v1/checks/{declarative['id']}")).json()["flow_file"] == "home.py"

    r = await client.post("/api/v1/checks", json=flow_check("lh"))
    assert r.status_code == 409
    assert r.json()["detail"] == "name: a check called 'lh' already exists"

    assert (await client.delete(f"/api/v1/checks/{lighthouse['id']}")).status_code == 204
    assert (await client.get(f"/api/v1/checks/{lighthouse['id']}")).status_code == 404
    assert (await client.delete(f"/api/v1/checks/{lighthouse['id']}")).status_code == 404
    assert (await client.patch("/api/v1/checks/999", json={"enabled": False})).status_code == 404
    assert (await client.post("/api/v1/checks/999/run")).status_code == 404
    assert (await client.get("/api/v1/checks/999/runs")).status_code == 404
    assert (await client.get("/api/v1/runs/999")).status_code == 404


async def test_steps_may_be_given_as_yaml_text(client: AsyncTestClient[Litestar]) -> None:
    yaml_steps = "- step: home\n  actions:\n    - goto: /\n    - assert_text: {selector: h1, text: Shop}\n"
    r = await client.post("/api/v1/checks", json=flow_check(steps=yaml_steps))
    assert r.status_code == 201, r.text
    assert r.json()["steps"] == [
        {"step": "home", "actions": [{"goto": "/"}, {"assert_text": {"selector": "h1", "text": "Shop"}}]}
    ]


BAD: list[tuple[dict[str, Any], str]] = [
    ({"kind": "ping"}, "kind"),
    ({"target": "file:///etc/passwd"}, "target: 'file:///etc/passwd' is not an http(s) URL"),
    ({"target": "javascript:alert(1)"}, "target: 'javascript:alert(1)' is not an http(s) URL"),
    ({"target": "ftp://shop.example/"}, "target: 'ftp://shop.example/' is not an http(s) URL"),
    ({"target": "http://127.0.0.1:9/"}, "target: refused http://127.0.0.1:9/: 127.0.0.1 is a loopback address"),
    ({"target": "http://localhost:8000/"}, "target: refused http://localhost:8000/: localhost (127.0.0.1) is a loopback"),
    ({"target": "http://10.1.2.3/"}, "target: refused http://10.1.2.3/: 10.1.2.3 is a private address"),
    ({"target": "http://[::1]/"}, "target: refused http://[::1]/: ::1 is a loopback address"),
    ({"target": "http://169.254.169.254/latest/"}, "target: refused http://169.254.169.254/latest/: 169.254.169.254 is a cloud metadata address"),
    ({"target": "http://metadata.google.internal/"}, "target: refused http://metadata.google.internal/: metadata.google.internal is a cloud metadata host"),
    ({"target": "https://shop.example/" + "a" * 2100}, "target: at most 2048 characters"),
    ({"steps": None, "flow_file": "../outside.py"}, "flow_file: '../outside.py' must be a .py file inside the flows directory"),
    ({"steps": None, "flow_file": "/etc/passwd"}, "flow_file: '/etc/passwd' must be a .py file inside the flows directory"),
    ({"steps": None, "flow_file": "escape.py"}, "flow_file: 'escape.py' must be a .py file inside the flows directory"),
    ({"steps": None, "flow_file": "missing.py"}, "flow_file: 'missing.py' not found in the flows directory"),
    ({"steps": None}, "steps: a flow check needs either steps (declarative) or flow_file, not both"),
    ({"flow_file": "home.py"}, "steps: a flow check needs either steps (declarative) or flow_file, not both"),
    ({"steps": [{"hover": "#x"}]}, "steps[0]: unknown action 'hover'"),
    ({"steps": [{"step": "a", "actions": [{"goto": "file:///etc/passwd"}]}]}, "steps[0].actions[0].url: only http(s) URLs or paths, not file:"),
    ({"steps": "- [unclosed"}, "steps: not valid YAML"),
    ({"code": "import os; os.system('id')"}, "unknown field `code`"),  # no field takes code
    ({"kind": "lighthouse"}, "steps: a lighthouse check audits its target only"),
    ({"kind": "lighthouse", "steps": None, "runs": 0}, "runs: must be between 1 and 9"),
    ({"interval_s": 0}, "interval_s: must be between 1 and 604800 seconds"),
    ({"interval_s": 60, "cron": "* * * * *"}, "schedule: give interval_s or cron, not both"),
    ({"cron": "every minute"}, "cron: 'every minute' is not a crontab expression"),
    ({"jitter_s": 7200}, "jitter_s: must be between 0 and 3600"),
    ({"device": "watch"}, "device"),
    ({"throttling": "3g"}, "throttling"),
    ({"site_id": 999}, "site_id: no site with id 999"),
    ({"name": ""}, "name"),
]  # fmt: skip


async def test_bad_input_is_a_400_naming_the_field(client: AsyncTestClient[Litestar]) -> None:
    for over, detail in BAD:
        r = await client.post("/api/v1/checks", json=flow_check(**over))
        assert r.status_code == 400, (over, r.status_code, r.text)
        assert detail in r.json()["detail"], (over, r.json()["detail"])
    assert (await client.get("/api/v1/checks")).json() == []
    # The same rules hold for a change.
    check = (await client.post("/api/v1/checks", json=flow_check())).json()
    r = await client.patch(f"/api/v1/checks/{check['id']}", json={"target": "http://10.0.0.1/"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("target: refused http://10.0.0.1/")
    r = await client.patch(
        f"/api/v1/checks/{check['id']}", json={"flow_file": "../outside.py", "steps": None}
    )
    assert r.status_code == 400
    assert r.json()["detail"].startswith("flow_file:")
    r = await client.patch(f"/api/v1/checks/{check['id']}", json={"name": "renamed"})
    assert r.status_code == 400  # not a field a change may carry
    assert (await client.get(f"/api/v1/checks/{check['id']}")).json()["target"] == "https://shop.example/"


async def test_private_targets_when_allowed_but_never_metadata(private_ok: AsyncTestClient[Litestar]) -> None:
    for target in ("http://127.0.0.1:8000/", "http://10.1.2.3/", "http://localhost:3000/"):
        r = await private_ok.post("/api/v1/checks", json=flow_check(target, target=target))
        assert r.status_code == 201, r.text
    for target in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://metadata.google.internal/",
                   "http://0.0.0.0:8000/", "file:///etc/passwd"):  # fmt: skip
        r = await private_ok.post("/api/v1/checks", json=flow_check(target, target=target))
        assert r.status_code == 400, (target, r.text)
        assert r.json()["detail"].startswith("target: "), r.text


async def test_allow_target_hosts_lets_exactly_that_host_and_port_in(settings: Settings) -> None:
    app = create_app(replace(settings, allow_target_hosts="127.0.0.1:3000, staging.internal"))
    async with AsyncTestClient(app=app) as c:
        c.headers["authorization"] = f"Bearer {ADMIN}"
        assert (
            await c.post("/api/v1/checks", json=flow_check("a", target="http://127.0.0.1:3000/"))
        ).status_code == 201
        r = await c.post("/api/v1/checks", json=flow_check("b", target="http://127.0.0.1:3001/"))
        assert r.status_code == 400
        assert "127.0.0.1 is a loopback address" in r.json()["detail"]


async def test_checks_need_a_token_and_changes_need_admin(client: AsyncTestClient[Litestar]) -> None:
    check = (await client.post("/api/v1/checks", json=flow_check())).json()
    r = await client.post("/api/v1/tokens", json={"scope": "read", "name": "dash"})
    assert r.status_code == 201, r.text
    read = {"authorization": f"Bearer {r.json()['token']}"}
    nobody = {"authorization": ""}
    for method, path in (("GET", "/api/v1/checks"), ("GET", f"/api/v1/checks/{check['id']}"),
                         ("GET", f"/api/v1/checks/{check['id']}/runs"), ("POST", "/api/v1/checks"),
                         ("POST", f"/api/v1/checks/{check['id']}/run")):  # fmt: skip
        assert (await client.request(method, path, headers=nobody, json={})).status_code == 401, path
    assert (await client.get("/api/v1/checks", headers=read)).status_code == 200
    assert (await client.post("/api/v1/checks", headers=read, json=flow_check("x"))).status_code == 403
    assert (await client.post(f"/api/v1/checks/{check['id']}/run", headers=read)).status_code == 403
    assert (await client.delete(f"/api/v1/checks/{check['id']}", headers=read)).status_code == 403


@pytest.mark.parametrize(
    "hosts", ["169.254.169.254", "169.254.169.254:80", "[fd00:ec2::254]:80", "metadata.google.internal:80"]
)
def test_metadata_addresses_cannot_be_allowed_as_target_hosts(hosts: str) -> None:
    with pytest.raises(SettingsError, match=r"FIELDLAB_ALLOW_TARGET_HOSTS: .* is a cloud metadata address"):
        Settings.from_env({"FIELDLAB_ALLOW_TARGET_HOSTS": f"127.0.0.1:3000,{hosts}"})
    assert Settings.from_env({"FIELDLAB_ALLOW_TARGET_HOSTS": "127.0.0.1:3000, [::1]:80"}).target_hosts() == (
        "127.0.0.1:3000",
        "[::1]:80",
    )
