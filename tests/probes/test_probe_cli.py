"""``python -m probes``: exit 0 pass, 1 fail, 2 usage/infrastructure with a one-line reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from probe_helpers import SiteServer

ROOT = Path(__file__).resolve().parents[2]


def probes(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "probes", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (["missing.py", "--url", "http://example.com"], "error: missing.py: no such flow file\n"),
        (
            ["{flow}", "--url", "http://10.0.0.1/"],
            "error: refused http://10.0.0.1/: 10.0.0.1 is a private address (set allow_private to allow it)\n",
        ),
        (
            ["{flow}", "--url", "file:///etc/passwd"],
            "error: scheme file: is not allowed (only http, https)\n",
        ),
        (
            ["{flow}", "--url", "http://127.0.0.1/", "--allow-private", "--chromium", "/nope/chromium"],
            "error: Chromium not found at /nope/chromium (given path): no such file\n",
        ),
        (
            ["{noflow}", "--url", "http://127.0.0.1/", "--allow-private"],
            "error: {noflow}: defines no `async def flow(page, step)`\n",
        ),
    ],
)
def test_usage_and_infrastructure_errors_exit_2(tmp_path: Path, args: list[str], stderr: str) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text("async def flow(page, step):\n    pass\n")
    noflow = tmp_path / "noflow.py"
    noflow.write_text("x = 1\n")
    subs = {"{flow}": str(flow), "{noflow}": str(noflow)}
    out = probes(*[subs.get(a, a) for a in args])
    assert out.returncode == 2
    assert out.stderr == stderr.replace("{noflow}", str(noflow))
    assert out.stdout == ""


def test_bad_option_is_a_usage_error() -> None:
    out = probes("x.py", "--url", "http://example.com", "--device", "watch")
    assert out.returncode == 2
    assert "invalid choice: 'watch'" in out.stderr


@pytest.mark.browser
@pytest.mark.slow
def test_runs_a_flow_and_exits_by_its_status(site: SiteServer, tmp_path: Path) -> None:
    site.html("/", "<h1>Hello</h1>")
    good = tmp_path / "good.py"
    good.write_text(
        "async def flow(page, step):\n"
        "    async with step('home'):\n"
        "        await page.goto('/')\n"
        "    async with step('check'):\n"
        "        assert await page.inner_text('h1') == 'Hello'\n"
    )
    out = probes(
        str(good), "--url", site.url, "--allow-private", "--json", "--artifacts", str(tmp_path / "a")
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "passed"
    assert [s["name"] for s in result["steps"]] == ["home", "check"]
    assert result["artifacts_dir"] == str(tmp_path / "a")
    assert (tmp_path / "a" / result["steps"][0]["screenshot"]).exists()

    bad = tmp_path / "bad.yml"
    bad.write_text(
        "- step: check\n  actions:\n    - goto: /\n    - assert_text: {selector: h1, text: Goodbye, timeout: 0.5}\n"
    )
    out = probes(str(bad), "--url", site.url, "--allow-private", "--retries", "0", "--device", "mobile")
    assert out.returncode == 1
    assert out.stdout.startswith("FAILED in ")
    assert "error: step 'check': assert_text: 'h1' does not contain 'Goodbye'" in out.stdout
    assert "[failed] check:" in out.stdout
