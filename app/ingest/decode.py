"""Beacon body -> rows to store. Pure: no I/O, so every rejection is unit-tested.

Every rejection raises ``BeaconRejected`` whose message names the offending field by its JSON
path (``$.metrics.LCP``, ``$[3].value``), which the endpoint returns with status 400.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.ingest import normalise
from app.ingest.schemas import WEB_VITALS_ATTRIBUTION, PageView, WebVitalsMetric

# Width of the url/message/source columns; FIELDLAB_BEACON_MAX_STRING cannot raise it.
MAX_STORED_STRING = 2048


class BeaconRejected(ValueError):
    """The body is malformed or breaks a limit; ``str()`` is the client-facing reason."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_metrics: int = 50
    max_errors: int = 20
    max_string: int = 2048
    max_attribution_keys: int = 32
    max_age_ms: int = 2 * 86_400_000


@dataclass(frozen=True, slots=True)
class SiteRules:
    """What normalisation needs to know about the site a beacon is for."""

    id: int
    page_groups: tuple[dict[str, str], ...] = ()
    query_allowlist: tuple[str, ...] = ()
    # page_groups in the hashable form the page-group cache is keyed on; derived once per site.
    group_rules: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_rules", normalise.rule_pairs(self.page_groups))


@dataclass(frozen=True, slots=True)
class Client:
    """What the request itself says about the browser. The IP is deliberately not here: it is
    used for rate limiting only and never stored."""

    user_agent: str = ""
    referer: str = ""
    origin: str = ""


@dataclass(slots=True)
class Rows:
    measurements: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


_any = msgspec.json.Decoder()
_LOOKS_LIKE_METRIC = re.compile(rb'"name"\s*:')
_HAS_METRICS = re.compile(rb'"metrics"\s*:')
_page_view = msgspec.json.Decoder(PageView)
_one_metric = msgspec.json.Decoder(WebVitalsMetric)
_metrics = msgspec.json.Decoder(list[WebVitalsMetric])


def _decode(body: bytes, limits: Limits) -> PageView | list[WebVitalsMetric]:
    """Typed decoding straight from bytes (fast, and errors carry the exact JSON path). The
    one ambiguity, a lone object, is a page view unless it looks like a web-vitals metric."""
    first = body.lstrip()[:1]
    if first == b"[":
        try:
            count = len(_any.decode(body))
        except msgspec.DecodeError as exc:
            raise BeaconRejected(f"malformed JSON: {exc}") from None
        if count == 0:
            raise BeaconRejected("empty array: expected at least one web-vitals metric")
        if count > limits.max_metrics:
            raise BeaconRejected(f"$: {count} metrics, at most {limits.max_metrics} allowed")
        return _metrics.decode(body)
    if first != b"{":
        raise BeaconRejected(
            "$: expected a JSON object (page view or web-vitals metric) or an array of metrics"
        )
    try:
        return _page_view.decode(body)
    except msgspec.ValidationError:
        if _LOOKS_LIKE_METRIC.search(body) and not _HAS_METRICS.search(body):
            # A lone web-vitals Metric: decode it as one, so its own errors are reported.
            return [_one_metric.decode(body)]
        raise


def decode_beacon(body: bytes, *, limits: Limits, site: SiteRules, client: Client, now_ms: int) -> Rows:
    if not body.strip():
        raise BeaconRejected("empty body: expected a JSON page view or web-vitals metric(s)")
    try:
        decoded = _decode(body, limits)
    except msgspec.ValidationError as exc:
        raise BeaconRejected(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BeaconRejected(f"malformed JSON: {exc}") from None
    if isinstance(decoded, list):
        return _from_web_vitals(decoded, limits=limits, site=site, client=client, now_ms=now_ms)
    _check_values(decoded, len(body), limits)
    return _from_page_view(decoded, limits=limits, site=site, client=client, now_ms=now_ms)


def _check_strings(value: Any, path: str, limits: Limits) -> None:
    """Walk decoded data: every string within max_string, every number finite."""
    if isinstance(value, str):
        if len(value) > limits.max_string:
            raise BeaconRejected(f"{path}: string of {len(value)} characters, at most {limits.max_string}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise BeaconRejected(f"{path}: must be a finite number")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_strings(k, f"{path}.{k[:64]}", limits)
            _check_strings(v, f"{path}.{k}", limits)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_strings(v, f"{path}[{i}]", limits)
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            _check_strings(getattr(value, name), f"{path}.{name}", limits)


def _within_limits(value: Any, max_string: int) -> bool:
    """The fast check of the same rules as ``_check_strings``: a flat walk that builds no JSON
    paths (``_check_strings`` runs only to name the field once this says no)."""
    stack = [value]
    while stack:
        v = stack.pop()
        kind = type(v)
        if kind is str:
            if len(v) > max_string:
                return False
        elif kind is float:
            if not math.isfinite(v):
                return False
        elif kind is dict:
            if any(len(k) > max_string for k in v):
                return False
            stack.extend(v.values())
        elif kind is list or kind is tuple:
            stack.extend(v)
        elif isinstance(v, msgspec.Struct):
            stack.extend(getattr(v, name) for name in v.__struct_fields__)
    return True


def _check_values(value: Any, body_size: int, limits: Limits) -> None:
    # msgspec refuses numbers out of float range ("Number out of range - at `$.metrics.LCP`")
    # and JSON has no NaN/Infinity, so decoded numbers are finite; what is left to check is
    # string lengths, and a body no longer than the limit cannot hold a longer string.
    if body_size <= limits.max_string:
        return
    if not _within_limits(value, limits.max_string):
        _check_strings(value, "$", limits)  # raises, naming the JSON path


def _present(struct: msgspec.Struct) -> dict[str, Any]:
    return {k: v for k, v in msgspec.structs.asdict(struct).items() if v is not None}


def _clamp_ts(ts: int | None, *, now_ms: int, limits: Limits) -> int:
    """Trust the browser's clock only within max_age: skewed clocks must not file data into a
    distant past or future hour."""
    if ts is None or abs(now_ms - ts) > limits.max_age_ms:
        return now_ms
    return ts


def _common(
    url: str,
    *,
    site: SiteRules,
    client: Client,
    group: str | None,
    vw: int | None,
    path_for: str,
    limits: Limits,
) -> dict[str, Any]:
    try:
        stored_url, path = normalise.strip_url(url, site.query_allowlist)
    except normalise.BadUrl as exc:
        raise BeaconRejected(f"{path_for}: {exc}") from None
    limit = min(limits.max_string, MAX_STORED_STRING)
    if len(stored_url) > limit:
        raise BeaconRejected(f"{path_for}: URL of {len(stored_url)} characters, at most {limit}")
    ua = client.user_agent
    return {
        "site_id": site.id,
        "url": stored_url,
        "page_group": (group or normalise.grouped_by_rules(path, site.group_rules))[:256],
        "device": normalise.device_class(ua, vw),
        "browser": normalise.browser_family(ua),
        "is_bot": normalise.is_bot(ua),
    }


def _from_page_view(pv: PageView, *, limits: Limits, site: SiteRules, client: Client, now_ms: int) -> Rows:
    """``pv`` has passed ``_check_values``."""
    if len(pv.errors) > limits.max_errors:
        raise BeaconRejected(f"$.errors: {len(pv.errors)} errors, at most {limits.max_errors} allowed")
    values = _present(pv.metrics)
    attributions = _present(pv.attribution)
    for name, attr in attributions.items():
        if len(attr) > limits.max_attribution_keys:
            raise BeaconRejected(
                f"$.attribution.{name}: {len(attr)} keys, at most {limits.max_attribution_keys} allowed"
            )
    for name, value in values.items():
        if value < 0 or (name != "CLS" and value > 3_600_000):
            raise BeaconRejected(f"$.metrics.{name}: {value} is out of range")
    base = _common(
        pv.url, site=site, client=client, group=pv.group, vw=pv.context.vw, path_for="$.url", limits=limits
    )
    ts = _clamp_ts(pv.ts, now_ms=now_ms, limits=limits)
    shared = {
        **base,
        "pageview_id": pv.id,
        "ts": ts,
        "received_ms": now_ms,
        "nav": pv.nav,
        "connection": normalise.connection_type(pv.context.ect),
    }
    rows = Rows()
    for name, value in values.items():
        rows.measurements.append(
            {**shared, "metric": name, "value": float(value), "attribution": attributions.get(name)}
        )
    for seq, err in enumerate(pv.errors):
        rows.errors.append(
            {
                "site_id": site.id,
                "pageview_id": pv.id,
                "seq": seq,
                "ts": ts + int(err.ts or 0),
                "message": err.msg[:MAX_STORED_STRING],
                "source": err.src[:MAX_STORED_STRING],
                "line": err.line,
                "col": err.col,
                "stack": err.stack[:4096],
                "url": base["url"],
                "page_group": base["page_group"],
                "device": base["device"],
                "browser": base["browser"],
                "is_bot": base["is_bot"],
            }
        )
    return rows


def _pick_attribution(
    name: str, raw: dict[str, Any] | None, *, path: str, limits: Limits
) -> dict[str, Any] | None:
    """Keep the few attribution fields fieldlab reports on; web-vitals' attribution build also
    carries whole PerformanceEntry objects that are large and not needed."""
    if not raw:
        return None
    picked = {}
    for theirs, ours in WEB_VITALS_ATTRIBUTION.get(name, {}).items():
        value = raw.get(theirs)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            _check_strings(value, f"{path}.{theirs}", limits)  # named as sent, not as stored
            picked[ours] = value
    return picked or None


def _from_web_vitals(
    metrics: list[WebVitalsMetric], *, limits: Limits, site: SiteRules, client: Client, now_ms: int
) -> Rows:
    rows = Rows()
    for i, m in enumerate(metrics):
        path = "$" if len(metrics) == 1 else f"$[{i}]"
        _check_strings({"url": m.url or ""}, path, limits)
        attr = _pick_attribution(m.name, m.attribution, path=f"{path}.attribution", limits=limits)
        if m.value < 0 or (m.name != "CLS" and m.value > 3_600_000):
            raise BeaconRejected(f"{path}.value: {m.value} is out of range for {m.name}")
        # web-vitals objects carry no page URL unless the site adds one; the Referer (which
        # sendBeacon sets) is the next best, then the Origin.
        url = m.url or client.referer or client.origin
        if not url:
            raise BeaconRejected(f"{path}.url: missing, and the request has no Referer or Origin")
        base = _common(
            url, site=site, client=client, group=None, vw=None, path_for=f"{path}.url", limits=limits
        )
        rows.measurements.append(
            {
                **base,
                # web-vitals gives every metric of a page load its own id, so (id, name) is
                # exactly "this page view's value of this metric".
                "pageview_id": m.id,
                "metric": m.name,
                "value": float(m.value),
                "ts": now_ms,
                "received_ms": now_ms,
                "nav": m.navigationType,
                "connection": "unknown",
                "attribution": attr,
            }
        )
    return rows
