"""Fixtures for probes/: pages served by the tests on 127.0.0.1 and a shared warm browser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from probe_helpers import SiteServer, serve

from probes.browser import BrowserPool


@pytest.fixture
def site() -> Iterator[SiteServer]:
    """The target, addressed as 127.0.0.1."""
    yield from serve("127.0.0.1")


@pytest.fixture
def third_party() -> Iterator[SiteServer]:
    """Another server addressed as ``localhost``: a different registrable host (third party)."""
    yield from serve("localhost")


@pytest.fixture(scope="session")
async def pool() -> AsyncIterator[BrowserPool]:
    """One warm browser shared by the tests that do not count processes. Without spare
    contexts: one prepared in the background would show up in another test's count of
    Chromium processes (test_probe_prewarm.py tests them with pools of its own)."""
    shared = BrowserPool(prewarm=False)
    yield shared
    await shared.close()
