"""FIELDLAB_LIGHTHOUSE_MOBILE_CPU_SLOWDOWN=auto through the scheduler's runner, with real
Lighthouse: the first mobile audit measures the host (and is not counted if 4x does not fit
it), later audits of the same process use the calibrated slowdown from their first run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.models import Check
from app.runner import LocalProbeRunner
from probes.lighthouse import CALIBRATION_TOLERANCE, MOBILE_CPU_SLOWDOWN, calibrated_slowdown, load_lhr
from tests.probes.probe_helpers import SiteServer, chromium_pids, serve, wait_until_gone

pytestmark = pytest.mark.serial  # counts Chromium processes / runs Lighthouse

PAGE = (
    "<!doctype html><html lang='en'><head><title>calibrate</title><meta name='viewport'"
    " content='width=device-width'></head><body><h1>Calibrate</h1><p>A small page.</p></body></html>"
)


@pytest.fixture
def site() -> Iterator[SiteServer]:
    for server in serve("127.0.0.1"):
        server.html("/", PAGE)
        yield server


def slowdown_of(artifacts: Path, lhr_path: str) -> float:
    lhr = load_lhr(artifacts / lhr_path)
    assert lhr["configSettings"]["formFactor"] == "mobile"
    return float(lhr["configSettings"]["throttling"]["cpuSlowdownMultiplier"])


@pytest.mark.browser
@pytest.mark.slow
async def test_auto_calibration_measures_the_host_once_per_process(site: SiteServer, tmp_path: Path) -> None:
    settings = Settings(
        allow_private_targets=True, lighthouse_mobile_cpu_slowdown="auto", data_dir=str(tmp_path)
    )
    runner = LocalProbeRunner(settings)
    check = Check(
        id=1, site_id=1, name="home-lh", kind="lighthouse", target=f"{site.url}/", runs=1, device="mobile"
    )
    before = chromium_pids()
    try:
        status, first = await runner.run(check, tmp_path / "first")
        assert status == "passed", first["error"]
        measured = first["runs"][0]["benchmark_index"]
        assert measured > 0
        wanted = calibrated_slowdown(measured)
        fits = abs(wanted - MOBILE_CPU_SLOWDOWN) <= CALIBRATION_TOLERANCE * MOBILE_CPU_SLOWDOWN
        if fits:  # a host near Lighthouse's reference speed: its 4x run counts, as LHCI's would
            assert [r["calibration"] for r in first["runs"]] == [False]
            assert first["lhr_paths"] == ["runs/lhr-1.json.gz"]
            used = MOBILE_CPU_SLOWDOWN
        else:  # the measuring run is not counted; the one run asked for follows, calibrated
            assert [r["calibration"] for r in first["runs"]] == [True, False]
            assert first["runs"][0]["lhr_path"] is None
            assert first["lhr_paths"] == ["runs/lhr-2.json.gz"]
            assert first["representative"] == 1
            used = wanted
        assert slowdown_of(tmp_path / "first", first["lhr_paths"][0]) == used == first["cpu_slowdown"]

        # The same process: the host is known, so no run measures it again. (Its slowdown is the
        # one its readings so far call for: the same unless the calibrated run's reading moved
        # their median by more than the tolerance.)
        assert runner.host_calibration is not None
        known = runner.host_calibration.slowdown
        assert known is not None
        status, second = await runner.run(check, tmp_path / "second")
        assert status == "passed", second["error"]
        assert [r["calibration"] for r in second["runs"]] == [False]
        assert slowdown_of(tmp_path / "second", second["lhr_paths"][0]) == known
    finally:
        await runner.close()
    assert wait_until_gone(before) == set()
