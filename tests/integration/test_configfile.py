"""Monitoring as code: `fieldlab serve --config fieldlab.yml` (SQLite and PostgreSQL). Errors
name the entry and field; applying the file again changes nothing; a field taken out of the
file goes back to its default; a real server runs a configured check at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import checks as check_data
from app import sites as site_data
from app.config import Settings
from app.configfile import ConfigError, apply, load, validate
from app.db import Database
from probes.safety import TargetPolicy
from tests.conftest import ADMIN, LiveServer
from tests.probes.probe_helpers import SiteServer, serve

ROOT = Path(__file__).resolve().parents[2]
FLOW = "async def flow(page, step):\n    async with step('home'):\n        await page.goto('/')\n"
CONFIG = """
sites:
  - name: shop
    origins: [https://shop.example]
    page_groups: [{{pattern: "/product/*", group: "/product/:id"}}]
checks:
  - name: home
    kind: flow
    site: shop
    target: {target}
    every: 1h
    device: mobile
    flow_file: home.py
  - name: search
    kind: flow
    target: {target}
    cron: "0 * * * *"
    steps:
      - goto: /
      - step: search
        actions:
          - fill: {{selector: "#q", value: shoes}}
          - press: {{selector: "#q", key: Enter}}
  - name: home-lighthouse
    kind: lighthouse
    target: {target}/
    runs: 1
    enabled: false
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    root = tmp_path / "flows"
    root.mkdir()
    (root / "home.py").write_text(FLOW)
    return root


def write(tmp_path: Path, text: str, name: str = "fieldlab.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("checks: {name: x}", "checks must be a list of mappings"),
        ("alerts: []", "expected a mapping with sites, checks (and budgets)"),
        ("checks:\n  - {name: a, kind: flow, intreval_s: 60}", "checks[0]: unknown field 'intreval_s'"),
        ("checks:\n  - {kind: flow}", "checks[0].name: required"),
        ("checks:\n  - {name: a, kind: flow, every: 15 minutes}", "checks[0].every: '15 minutes' is not a duration"),
        ("checks:\n  - {name: a}\n  - {name: a}", "checks[1].name: 'a' appears twice"),
        ("sites:\n  - {name: s, origin: https://x.example}", "sites[0]: unknown field 'origin'"),
        ("checks: [\n", "while parsing"),
    ],
)  # fmt: skip
def test_shape_errors_name_the_entry(tmp_path: Path, text: str, error: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert error in str(caught.value)


@pytest.mark.parametrize(
    ("check", "error"),
    [
        ("{name: a, kind: flow, target: https://x.example, cron: 'every day', steps: [{goto: /}]}", "checks[0].cron: 'every day' is not a crontab expression"),
        ("{name: a, kind: flow, target: https://x.example, flow_file: ../x.py}", "checks[0].flow_file: '../x.py' must be a .py file inside the flows directory"),
        ("{name: a, kind: flow, target: https://x.example, steps: [{hover: x}]}", "checks[0].steps[0]: unknown action 'hover'"),
        ("{name: a, kind: flow, target: 'file:///etc/passwd', steps: [{goto: /}]}", "checks[0].target: 'file:///etc/passwd' is not an http(s) URL"),
    ],
)  # fmt: skip
def test_field_errors_are_found_before_start(tmp_path: Path, flows: Path, check: str, error: str) -> None:
    path, message = invalid(tmp_path, flows, f"checks:\n  - {check}\n")
    assert message == f"{path}: {error}" or error in message


def invalid(tmp_path: Path, flows: Path, text: str) -> tuple[Path, str]:
    """The file, and why validate() refuses it."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        validate(path, flows_dir=flows)
    return path, str(caught.value)


@pytest.mark.parametrize(
    ("site", "error"),
    [
        ("{name: s}", "sites[0].origins: give at least one origin"),
        ("{name: s, origins: [shop.example]}", "sites[0].origins: "),
        ("{name: s, origins: https://s.example}", "sites[0].origins: must be a list of URLs"),
        ("{name: s, origins: [https://s.example], page_groups: [/product/*]}", "sites[0].page_groups: must be a list of {pattern, group} mappings"),
        ("{name: s, origins: [https://s.example], page_groups: [{pattern: product}]}", "sites[0].page_groups[0].pattern: 'product' "),
        ("{name: s, origins: [https://s.example], query_allowlist: utm_source}", "sites[0].query_allowlist: must be a list"),
    ],
)  # fmt: skip
def test_site_errors_are_found_before_start(tmp_path: Path, flows: Path, site: str, error: str) -> None:
    """A bad site entry used to pass the start-up check and fail only when applied."""
    path, message = invalid(tmp_path, flows, f"sites:\n  - {site}\n")
    assert message.startswith(f"{path}: {error}"), message


def test_config_check_command(tmp_path: Path, flows: Path) -> None:
    good = write(tmp_path, "sites:\n  - {name: s, origins: [https://s.example]}\n"
                           "checks:\n  - {name: a, kind: flow, target: https://s.example, every: 1h, flow_file: home.py}\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDLAB_")}
    env.update(FIELDLAB_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")

    def check(path: Path, *more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app", "config", "check", str(path), *more],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    ok = check(good, "--flows-dir", str(flows))
    assert (ok.returncode, ok.stderr.strip()) == (0, f"{good}: valid (1 site(s), 1 check(s))")
    missing = check(good)  # the default flows directory has no home.py
    assert missing.returncode == 2
    assert "checks[0].flow_file" in missing.stderr
    bad = check(write(tmp_path, "sites:\n  - {name: s, origins: [ftp://s.example]}\n", "bad.yml"))
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"error: {tmp_path / 'bad.yml'}: sites[0].origins: ")
    assert not (tmp_path / "f.db").exists()  # no database touched


async def test_apply_is_idempotent_and_the_file_is_the_truth(
    db: Database, tmp_path: Path, flows: Path
) -> None:
    policy = TargetPolicy(allow_private=False)
    path = write(tmp_path, CONFIG.format(target="https://shop.example"))
    assert await apply(db=db, path=path, flows_dir=flows, policy=policy) == {"sites": 1, "checks": 3}
    first = {c.name: c for c in await check_data.list_checks(db=db)}
    assert await apply(db=db, path=path, flows_dir=flows, policy=policy) == {"sites": 1, "checks": 3}
    again = {c.name: c for c in await check_data.list_checks(db=db)}
    assert {n: c.model_dump() for n, c in again.items()} == {n: c.model_dump() for n, c in first.items()}
    assert len(await site_data.list_sites(db=db)) == 1

    home = again["home"]
    shop = await site_data.get_site_by_name(db=db, name="shop")
    assert shop is not None
    assert (home.site_id, home.interval_s, home.device, home.flow_file) == (
        shop.id,
        3600,
        "mobile",
        "home.py",
    )
    assert again["search"].steps is not None
    assert again["search"].steps[0] == {"goto": "/"}
    assert (again["home-lighthouse"].runs, again["home-lighthouse"].enabled) == (1, False)

    # Lines taken out of the file go back to their defaults; the check keeps its id (and runs).
    write(tmp_path, CONFIG.format(target="https://shop.example").replace("    device: mobile\n", "")
          .replace("every: 1h", "every: 30m"))  # fmt: skip
    await apply(db=db, path=path, flows_dir=flows, policy=policy)
    changed = await check_data.get_check(db=db, check_id=home.id or 0)
    assert changed is not None
    assert (changed.device, changed.interval_s) == ("desktop", 1800)

    # The same for a site: the file's origins and rules replace the stored ones (the rules line
    # taken out: none), and the key, which is in every page's snippet tag, stays.
    write(tmp_path, CONFIG.format(target="https://shop.example")
          .replace("origins: [https://shop.example]", "origins: [https://shop.example, https://m.shop.example]")
          .replace('    page_groups: [{pattern: "/product/*", group: "/product/:id"}]\n', ""))  # fmt: skip
    await apply(db=db, path=path, flows_dir=flows, policy=policy)
    moved = await site_data.get_site_by_name(db=db, name="shop")
    assert moved is not None
    assert (moved.id, moved.key) == (shop.id, shop.key)
    assert (moved.origins, moved.page_groups) == (["https://m.shop.example", "https://shop.example"], [])

    bad = write(tmp_path, "checks:\n  - {name: x, kind: flow, site: nope, target: https://x.example, steps: [{goto: /}]}\n", "bad.yml")  # fmt: skip
    with pytest.raises(ConfigError, match=r"checks\[0\]\.site: no site named 'nope'"):
        await apply(db=db, path=bad, flows_dir=flows, policy=policy)
    private = write(tmp_path, CONFIG.format(target="http://10.0.0.8"), "private.yml")
    with pytest.raises(
        ConfigError, match=r"checks\[0\]\.target: refused http://10\.0\.0\.8: 10\.0\.0\.8 is a private"
    ):
        await apply(db=db, path=private, flows_dir=flows, policy=policy)


def test_serve_refuses_a_bad_file_with_the_reason(tmp_path: Path, flows: Path) -> None:
    path = write(tmp_path, "checks:\n  - {name: a, kind: flow, target: https://x.example, cron: nope, steps: [{goto: /}]}\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDLAB_")}
    env.update(
        FIELDLAB_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'f.db'}", FIELDLAB_FLOWS_DIR=str(flows)
    )
    out = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "1", "--config", str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {path}: checks[0].cron: 'nope' is not a crontab expression")
    assert not (tmp_path / "f.db").exists()  # stopped before touching the database


@pytest.fixture
def shop() -> Iterator[SiteServer]:
    for server in serve("127.0.0.1"):
        server.html("/", "<!doctype html><title>shop</title><h1>Shop</h1><input id=q>")
        yield server


@pytest.mark.slow
@pytest.mark.browser
def test_serve_with_config_runs_its_checks_and_restarts_idempotently(
    settings: Settings, tmp_path: Path, flows: Path, shop: SiteServer
) -> None:
    path = write(tmp_path, CONFIG.format(target=shop.url))
    server = LiveServer(settings, tmp_path / "server.log")
    server.extra_env = {"FIELDLAB_ALLOW_PRIVATE_TARGETS": "1", "FIELDLAB_FLOWS_DIR": str(flows),
                        "FIELDLAB_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    server.extra_args = ["--config", str(path)]
    auth = {"authorization": f"Bearer {ADMIN}"}
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers=auth, timeout=30) as c:
            checks = {x["name"]: x for x in c.get("/api/v1/checks").json()}
            assert sorted(checks) == ["home", "home-lighthouse", "search"]
            # A scheduled check that has never run runs at once; cron and disabled ones wait.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                runs = c.get(f"/api/v1/checks/{checks['home']['id']}/runs").json()
                if runs and runs[0]["status"] != "running":
                    break
                time.sleep(0.5)
            assert [r["status"] for r in runs] == ["passed"], runs
            assert runs[0]["trigger"] == "schedule"
            assert c.get(f"/api/v1/checks/{checks['search']['id']}/runs").json() == []
            assert c.get(f"/api/v1/checks/{checks['home-lighthouse']['id']}/runs").json() == []
    finally:
        server.stop()

    server.start()  # same file, same database: nothing new, nothing duplicated, no extra run
    try:
        with httpx.Client(base_url=server.url, headers=auth, timeout=30) as c:
            again = {x["name"]: x for x in c.get("/api/v1/checks").json()}
            assert {n: x["id"] for n, x in again.items()} == {n: x["id"] for n, x in checks.items()}
            assert [s["name"] for s in c.get("/api/v1/sites").json()] == ["shop"]
            time.sleep(1.5)
            assert len(c.get(f"/api/v1/checks/{checks['home']['id']}/runs").json()) == 1
    finally:
        server.stop()
