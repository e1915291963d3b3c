"""`fieldlab check run FLOW --url BASE` as a user runs it (a real subprocess, real Chromium, a
page served by the test): exit 0 passed, 0 flaky with a warning, 1 failed, 2 usage or
infrastructure error with a one-line reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.probes.probe_helpers import SiteServer, serve

ROOT = Path(__file__).resolve().parents[2]
PASSING = """
async def flow(page, step):
    async with step("home"):
        await page.goto("/")
    async with step("read"):
        assert await page.inner_text("h1") == "Hello"
"""
FAILING = """
async def flow(page, step):
    async with step("home"):
        await page.goto("/")
        assert await page.inner_text("h1") == "Goodbye", "the greeting is wrong"
"""
# Fails on its first attempt only: the retry passes, which makes the run flaky.
FLAKY = """
import pathlib

MARK = pathlib.Path(__file__).with_suffix(".ran")

async def flow(page, step):
    async with step("home"):
        await page.goto("/")
        if not MARK.exists():
            MARK.write_text("1")
            raise AssertionError("first attempt fails")
"""


def check_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIELDLAB_")}
    return subprocess.run(
        [sys.executable, "-m", "app", "check", "run", *args],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    for name, text in (("passing", PASSING), ("failing", FAILING), ("flaky", FLAKY)):
        (tmp_path / f"{name}.py").write_text(text)
    (tmp_path / "noflow.py").write_text("x = 1\n")
    return tmp_path


@pytest.fixture
def site() -> Iterator[SiteServer]:
    for server in serve("127.0.0.1"):
        server.html("/", "<!doctype html><title>hi</title><h1>Hello</h1>")
        yield server


@pytest.mark.parametrize(
    ("args", "env", "reason"),
    [
        (["missing.py", "--url", "https://shop.example/"], {}, "error: missing.py: no such flow file"),
        (["{flows}/noflow.py", "--url", "https://shop.example/"], {},
         "error: {flows}/noflow.py: defines no `async def flow(page, step)`"),
        (["{flows}/passing.py", "--url", "http://127.0.0.1:9/"], {},
         "error: refused http://127.0.0.1:9/: 127.0.0.1 is a loopback address (set allow_private to allow it)"),
        (["{flows}/passing.py", "--url", "http://127.0.0.1:9/", "--allow-host", "127.0.0.1:10"], {},
         "error: refused http://127.0.0.1:9/: 127.0.0.1 is a loopback address (set allow_private to allow it)"),
        (["{flows}/passing.py", "--url", "http://169.254.169.254/", "--allow-private"], {},
         "error: refused http://169.254.169.254/: 169.254.169.254 is a cloud metadata address"),
        (["{flows}/passing.py", "--url", "file:///etc/passwd"], {},
         "error: scheme file: is not allowed (only http, https)"),
        (["{flows}/passing.py", "--url", "http://127.0.0.1:9/", "--allow-private"],
         {"FIELDLAB_CHROMIUM": "/nope/chromium"},
         "error: Chromium not found at /nope/chromium (given path): no such file"),
    ],
)  # fmt: skip
def test_usage_and_infrastructure_errors_exit_2_with_one_line(
    flows: Path, args: list[str], env: dict[str, str], reason: str
) -> None:
    out = check_run(*[a.replace("{flows}", str(flows)) for a in args], **env)
    assert out.returncode == 2, out
    assert out.stderr.replace("\n", " ").strip() == reason.replace("{flows}", str(flows))
    assert out.stdout == ""


def test_a_bad_option_is_a_usage_error(flows: Path) -> None:
    out = check_run(str(flows / "passing.py"), "--url", "https://shop.example/", "--device", "watch")
    assert out.returncode == 2
    assert "'watch' is not one of" in out.stderr


@pytest.mark.slow
@pytest.mark.browser
def test_exit_status_follows_the_run(flows: Path, site: SiteServer, tmp_path: Path) -> None:
    out = check_run(str(flows / "passing.py"), "--url", site.url, "--allow-host", site.host, "--json",
                    "--artifacts", str(tmp_path / "a"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "passed"
    assert [s["name"] for s in result["steps"]] == ["home", "read"]
    assert result["steps"][0]["navigations"][0]["vitals"]["FCP"] > 0
    assert result["artifacts_dir"] == str(tmp_path / "a")
    assert all((tmp_path / "a" / s["screenshot"]).is_file() for s in result["steps"])

    out = check_run(str(flows / "failing.py"), "--url", site.url, "--allow-private", "--retries", "0")
    assert out.returncode == 1, out.stderr
    assert out.stdout.startswith("FAILED in ")
    assert "step 'home': the greeting is wrong" in out.stdout
    assert "failure.png" in out.stdout
    assert "trace.zip" in out.stdout

    out = check_run(str(flows / "flaky.py"), "--url", site.url, "--allow-private", "--device", "mobile")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("FLAKY in ")
    assert "(2 attempt(s))" in out.stdout
    assert "warning: it passed only on a retry" in out.stdout
    assert "attempt 1: step 'home': first attempt fails" in out.stdout
