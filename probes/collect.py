"""What a run's page does, bucketed per step: resources (from CDP Network events, which see
the real bytes on the wire for every origin, unlike Resource Timing without
Timing-Allow-Origin), failed requests, console errors, and the lab collector's reports."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from probes.vitals import Snapshot

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, CDPSession, ConsoleMessage, Page

COLLECTOR_JS = Path(__file__).with_name("lab_vitals.js")
TYPES = ("document", "script", "stylesheet", "image", "font", "xhr", "media", "other")
_CDP_TYPES = {
    "Document": "document", "Script": "script", "Stylesheet": "stylesheet", "Image": "image",
    "Font": "font", "XHR": "xhr", "Fetch": "xhr", "EventSource": "xhr", "Media": "media",
}  # fmt: skip
SCREENSHOT: dict[str, Any] = {"format": "jpeg", "quality": 70, "optimizeForSpeed": True}  # CDP
SCREENSHOT_SUFFIX = ".jpg"
MAX_ITEMS = 50  # per step and list: a broken page must not produce a megabyte of results
# Second-level labels under which registries sell names (co.uk, com.au, ...): without a public
# suffix list, "last two labels" would make every *.co.uk site the same party.
_SLDS = {"co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go"}


def site(host: str) -> str:
    """Approximate registrable domain (eTLD+1); IP addresses and single labels are themselves."""
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SLDS:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


@dataclass
class Resources:
    by_type: dict[str, dict[str, int]] = field(
        default_factory=lambda: {t: {"count": 0, "bytes": 0} for t in TYPES}
    )
    total_count: int = 0
    total_bytes: int = 0
    third_party_count: int = 0
    third_party_bytes: int = 0
    third_party_share: float = 0.0  # of bytes
    third_party_hosts: list[str] = field(default_factory=list)

    def add(self, kind: str, size: int, third_party_host: str | None) -> None:
        self.by_type[kind]["count"] += 1
        self.by_type[kind]["bytes"] += size
        self.total_count += 1
        self.total_bytes += size
        if third_party_host is not None:
            self.third_party_count += 1
            self.third_party_bytes += size
            if third_party_host not in self.third_party_hosts and len(self.third_party_hosts) < MAX_ITEMS:
                self.third_party_hosts.append(third_party_host)
        self.third_party_share = (
            round(self.third_party_bytes / self.total_bytes, 4) if self.total_bytes else 0.0
        )


@dataclass
class Bucket:
    resources: Resources = field(default_factory=Resources)
    failed_requests: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[dict[str, Any]] = field(default_factory=list)
    reports: list[Snapshot] = field(default_factory=list)


class Recorder:
    """Attach with :meth:`start` before the first navigation; :meth:`take` at each step end."""

    def __init__(self, page: Page, target_url: str) -> None:
        self.page = page
        self.target_site = site(urlsplit(target_url).hostname or "")
        self.bucket = Bucket()
        self._requests: dict[str, tuple[str, str]] = {}  # requestId -> (url, type)
        self._cdp: CDPSession | None = None

    async def start(self, context: BrowserContext) -> None:
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_pageerror)
        # Independent round trips to the browser, so at once: this is on every run's clock.
        await asyncio.gather(
            context.add_init_script(path=str(COLLECTOR_JS)),
            context.expose_binding("__fieldlabReport", self._on_report),
            self._watch_network(context),
        )

    async def _watch_network(self, context: BrowserContext) -> None:
        cdp = self._cdp = await context.new_cdp_session(self.page)
        cdp.on("Network.requestWillBeSent", self._on_request)
        cdp.on("Network.responseReceived", self._on_response)
        cdp.on("Network.loadingFinished", self._on_finished)
        cdp.on("Network.loadingFailed", self._on_failed)
        await cdp.send("Network.enable")

    async def screenshot(self, path: Path) -> bool:
        """The viewport as a JPEG, straight from CDP on the recorder's session: about half the
        time of Playwright's PNG screenshot right after a navigation (which also waits for web
        fonts and hides the caret first), and it is on the clock of every step. False when the
        session cannot capture - it is between renderers, or the page (e.g. the error page of a
        refused navigation) has no frame yet - even after a few tries."""
        from playwright.async_api import Error as PlaywrightError

        assert self._cdp is not None
        for wait in (0.0, 0.1, 0.2):  # a page that just committed may not have a frame yet
            await asyncio.sleep(wait)
            try:
                shot = await self._cdp.send("Page.captureScreenshot", SCREENSHOT)
            except PlaywrightError:
                continue
            await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
            return True
        return False

    def take(self) -> Bucket:
        bucket, self.bucket = self.bucket, Bucket()
        return bucket

    # --- lab collector ----------------------------------------------------------------------

    def _on_report(self, source: Any, payload: Any) -> None:
        # A page that calls the binding with nonsense simply has no vitals.
        with contextlib.suppress(msgspec.DecodeError):
            self.bucket.reports.append(msgspec.json.decode(str(payload), type=Snapshot))

    async def snapshot(self, settle: bool = False, paint: bool = False) -> Snapshot | None:
        """The current document's observations. ``settle`` first waits (at most 1 s) for Event
        Timing entries of recent input that the browser has yet to report, and with ``paint``
        (at most 0.5 s) for a first contentful paint not reported yet (lab_vitals.js)."""
        raw = await self.page.evaluate(
            "([settle, paint]) => { const lab = window.__fieldlabLab; if (!lab) return null;"
            " return settle ? lab.settle(paint).then(lab.snapshot) : lab.snapshot(); }",
            [settle, paint],
        )
        try:
            return None if raw is None else msgspec.convert(raw, Snapshot)
        except msgspec.ValidationError:
            return None

    # --- console ----------------------------------------------------------------------------

    def _add(self, items: list[dict[str, Any]], item: dict[str, Any]) -> None:
        if len(items) < MAX_ITEMS:
            items.append(item)

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            location = msg.location or {}
            self._add(
                self.bucket.console_errors,
                {"type": "console", "text": msg.text[:1000], "url": location.get("url") or None},
            )

    def _on_pageerror(self, error: Exception) -> None:
        self._add(self.bucket.console_errors, {"type": "pageerror", "text": str(error)[:1000], "url": None})

    # --- network ----------------------------------------------------------------------------

    def _on_request(self, event: dict[str, Any]) -> None:
        url = str(event["request"]["url"])
        if url.startswith(("data:", "blob:")):
            return
        self._requests[event["requestId"]] = (url, _CDP_TYPES.get(str(event.get("type")), "other"))

    def _on_response(self, event: dict[str, Any]) -> None:
        known = self._requests.get(event["requestId"])
        status = int(event["response"].get("status") or 0)
        if known and status >= 400:
            self._add(
                self.bucket.failed_requests,
                {"url": known[0], "type": known[1], "status": status, "error": None},
            )

    def _on_finished(self, event: dict[str, Any]) -> None:
        known = self._requests.pop(event["requestId"], None)
        if known is None:
            return
        url, kind = known
        host = urlsplit(url).hostname or ""
        third = host if site(host) != self.target_site else None
        self.bucket.resources.add(kind, int(event.get("encodedDataLength") or 0), third)

    def _on_failed(self, event: dict[str, Any]) -> None:
        known = self._requests.pop(event["requestId"], None)
        error = str(event.get("errorText") or "")
        # Cancelled: the page navigated away; blocked: listed under blocked_requests.
        if known is None or event.get("canceled") or "ERR_BLOCKED_BY_CLIENT" in error:
            return
        self._add(
            self.bucket.failed_requests, {"url": known[0], "type": known[1], "status": None, "error": error}
        )
