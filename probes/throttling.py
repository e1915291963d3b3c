"""Device presets and throttling profiles, applied per page through CDP.

Network throttling in the browser is per request, not per packet, so, like Lighthouse's
``throttlingMethod: devtools``, the nominal round-trip time is multiplied by 3.75 (to cover DNS,
TCP and TLS round trips a real connection pays) and throughput by 0.9. The nominal values are
Lighthouse's ``mobileSlow4G`` and ``desktopDense4G``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.async_api import CDPSession, Page

RTT_ADJUSTMENT = 3.75  # Lighthouse DEVTOOLS_RTT_ADJUSTMENT_FACTOR
THROUGHPUT_ADJUSTMENT = 0.9  # Lighthouse DEVTOOLS_THROUGHPUT_ADJUSTMENT_FACTOR


@dataclass(frozen=True, slots=True)
class Throttling:
    rtt_ms: float = 0.0
    down_kbps: float = 0.0  # kibibits per second, as Lighthouse counts them; 0: unlimited
    up_kbps: float = 0.0
    cpu_slowdown: float = 1.0

    @property
    def network(self) -> dict[str, Any] | None:
        """``Network.emulateNetworkConditions`` parameters, None for no network throttling."""
        if not (self.rtt_ms or self.down_kbps or self.up_kbps):
            return None
        return {
            "offline": False,
            "latency": self.rtt_ms * RTT_ADJUSTMENT,
            "downloadThroughput": int(self.down_kbps * THROUGHPUT_ADJUSTMENT * 1024 / 8) or -1,
            "uploadThroughput": int(self.up_kbps * THROUGHPUT_ADJUSTMENT * 1024 / 8) or -1,
        }


THROTTLING: dict[str, Throttling] = {
    "none": Throttling(),
    "mobile-slow-4g": Throttling(rtt_ms=150, down_kbps=1.6 * 1024, up_kbps=750, cpu_slowdown=4),
    "desktop-dense-4g": Throttling(rtt_ms=40, down_kbps=10 * 1024, up_kbps=10 * 1024, cpu_slowdown=1),
}


@dataclass(frozen=True, slots=True)
class Device:
    width: int
    height: int
    device_scale_factor: float
    is_mobile: bool
    has_touch: bool
    # {v}: the browser's major version, so the UA matches the engine actually running.
    user_agent: str

    def context_options(self, version: str) -> dict[str, Any]:
        return {
            "viewport": {"width": self.width, "height": self.height},
            "device_scale_factor": self.device_scale_factor,
            "is_mobile": self.is_mobile,
            "has_touch": self.has_touch,
            "user_agent": self.user_agent.format(v=version),
        }


# Every lab request says it is synthetic (as Lighthouse says "Chrome-Lighthouse"): a monitored
# site's own RUM, fieldlab's included (app/ingest/normalise.py), can then keep lab page views
# out of its field figures. A product token at the end changes no site's UA sniffing.
SYNTHETIC_TOKEN = "fieldlab-synthetic/1"  # noqa: S105 (a user-agent token, not a secret)
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 "
    + SYNTHETIC_TOKEN
)
MOBILE_UA = (
    "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Mobile Safari/537.36 " + SYNTHETIC_TOKEN
)

# Lighthouse's emulated devices (moto g power; its desktop preset), so lab flows and audits
# look at the same viewport.
DEVICES: dict[str, Device] = {
    "mobile": Device(412, 823, 1.75, is_mobile=True, has_touch=True, user_agent=MOBILE_UA),
    "desktop": Device(1350, 940, 1.0, is_mobile=False, has_touch=False, user_agent=DESKTOP_UA),
}


async def apply_throttling(page: Page, profile: Throttling) -> CDPSession | None:
    """Throttle ``page``; returns the CDP session, which must stay referenced while the page
    lives (emulation ends with the session)."""
    if profile.cpu_slowdown == 1 and profile.network is None:
        return None
    cdp = await page.context.new_cdp_session(page)
    if profile.cpu_slowdown != 1:
        await cdp.send("Emulation.setCPUThrottlingRate", {"rate": profile.cpu_slowdown})
    if (network := profile.network) is not None:
        await cdp.send("Network.enable")
        await cdp.send("Network.emulateNetworkConditions", network)
    return cdp
