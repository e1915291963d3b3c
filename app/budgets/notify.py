"""Alert notifications to webhooks: generic JSON or Slack-compatible, retried with backoff, every
attempt's outcome kept in the delivery log (table ``webhook_delivery``).

Notifications are queued in the log (``pending``, unique per webhook and event) in the same
transaction that moves the alert state, and sent after it commits; so an event reaches each
webhook at most once even when two evaluations race, and a process that stops in between leaves
them pending for the ``budgets`` job to send later. A receiver that answers 5xx,
408 or 429, or cannot be reached, is retried ``retries`` times with doubling delays; any other
4xx is final (the request itself is wrong, repeating it will not help).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from app.budgets import store
from app.budgets.alerts import AlertEvent
from app.budgets.verdict import Verdict
from app.db import Database
from app.models import Webhook, WebhookDelivery
from app.observability import Metrics

log = logging.getLogger("fieldlab.notify")

_EMOJI = {"failing": ":red_circle:", "still-failing": ":red_circle:", "recovered": ":large_green_circle:",
          "test": ":bell:"}  # fmt: skip


def duration(ms: int) -> str:
    """``2h 5m``, ``3d 4h``, ``45s``: how long a budget was failing, for people."""
    s = max(0, ms // 1000)
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    parts = [
        f"{d}d" if d else "",
        f"{h}h" if h else "",
        f"{m}m" if m and not d else "",
        f"{sec}s" if not (d or h or m) else "",
    ]
    return " ".join(p for p in parts if p)


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "bytes":
        return f"{value:,.0f} bytes"
    if unit:
        return f"{value:g} {unit}"
    return f"{value:.3g}"


def describe(event: AlertEvent) -> str:
    """One line for people, the same in every format."""
    v = event.verdict
    if event.kind == "test":
        return f"TEST {v.name}: {v.detail}"
    level = "FAIL" if event.band == "fail" else "WARN"
    numbers = f"{_value(v.actual, v.unit)} (limit {_value(v.limit, v.unit)}"
    numbers += f", {v.samples:,} samples)" if v.samples is not None else ")"
    if v.budget_id.startswith("regression:"):  # a deploy comparison (app/budgets/watch.py) says it best
        numbers = v.detail
    if event.kind == "failing":
        return f"{level} {v.name} is failing: {numbers}"
    if event.kind == "still-failing":
        since = f" for {duration(event.failing_for_ms)}" if event.failing_for_ms is not None else ""
        return f"{level} {v.name} is still failing{since}: {numbers}"
    after = f" after failing for {duration(event.failing_for_ms)}" if event.failing_for_ms is not None else ""
    return f"{level} {v.name} recovered{after}: {numbers}"


def generic_payload(event: AlertEvent, scope: str) -> dict[str, Any]:
    v = event.verdict
    return {
        "event": event.kind,
        "band": event.band,
        "scope": scope,
        "budget": {"id": v.budget_id, "name": v.name},
        "status": v.status,
        "actual": v.actual,
        "limit": v.limit,
        "margin": v.margin,
        "unit": v.unit,
        "samples": v.samples,
        "detail": v.detail,
        "at": store.iso_ms(event.at_ms),
        "failing_since": store.iso_ms(event.failing_since_ms),
        "failing_for_s": None if event.failing_for_ms is None else event.failing_for_ms // 1000,
        "text": describe(event),
    }


def slack_payload(event: AlertEvent, scope: str) -> dict[str, Any]:
    """What Slack's incoming webhooks (and Mattermost, Rocket.Chat, Discord's /slack) accept."""
    text = f"{_EMOJI[event.kind]} {describe(event)}"
    context = f"fieldlab · {scope} · `{event.verdict.budget_id}`"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def payload_for(fmt: str, event: AlertEvent, scope: str) -> dict[str, Any]:
    return slack_payload(event, scope) if fmt == "slack" else generic_payload(event, scope)


def test_event(hook_name: str, now_ms: int) -> AlertEvent:
    """What "send a test" delivers: the webhook's own format, logged like any notification."""
    detail = f"webhook {hook_name!r} reaches this channel; fieldlab's alerts for it will arrive here"
    verdict = Verdict("test", "fieldlab test notification", "pass", None, None, None, detail=detail)
    return AlertEvent(kind="test", band="warn", verdict=verdict, at_ms=now_ms, failing_since_ms=None)


class Notifier(Protocol):
    async def send(self, delivery_ids: Sequence[int]) -> None: ...

    async def resend_stale(self, *, now_ms: int) -> int: ...

    async def deliver(self, hook: Webhook, event: AlertEvent, scope: str) -> str | None: ...

    async def close(self) -> None: ...


class WebhookNotifier:
    """Sends the notifications queued in the delivery log to their webhooks."""

    def __init__(
        self,
        *,
        db: Database,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        client: httpx.AsyncClient | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    @property
    def longest_attempt_s(self) -> float:
        """How long one delivery can take at most, all retries and waits included."""
        waits = sum(self.backoff_s * (1 << i) for i in range(self.retries))
        return (self.retries + 1) * self.timeout_s + waits

    async def close(self) -> None:
        await self._client.aclose()

    async def send(self, delivery_ids: Sequence[int]) -> None:
        """Send these pending deliveries, concurrently."""
        if delivery_ids:
            rows = await store.pending_deliveries(db=self.db, ids=delivery_ids)
            await asyncio.gather(*(self._deliver(d, h) for d, h in rows))

    async def resend_stale(self, *, now_ms: int) -> int:
        """Send deliveries still pending long after they were queued (their process stopped
        before it sent them). Younger ones may be in flight elsewhere and are left alone."""
        cutoff = now_ms - int((self.longest_attempt_s + 60) * 1000)
        rows = await store.pending_deliveries(db=self.db, created_before_ms=cutoff)
        await asyncio.gather(*(self._deliver(d, h) for d, h in rows))
        return len(rows)

    async def deliver(self, hook: Webhook, event: AlertEvent, scope: str) -> str | None:
        """Queue and send one event to one webhook now; returns the logged outcome (None: this
        event was already queued for this webhook)."""
        assert hook.id is not None
        body = payload_for(hook.format, event, scope)
        delivery_id = await store.claim_delivery(
            db=self.db, webhook_id=hook.id, event=event, scope=scope, payload=body
        )
        if delivery_id is None:
            return None
        [(row, _)] = await store.pending_deliveries(db=self.db, ids=[delivery_id])
        return await self._deliver(row, hook)

    async def _deliver(self, delivery: WebhookDelivery, hook: Webhook) -> str:
        assert delivery.id is not None
        status, attempts, http_status, error = await self._send(hook, delivery.payload)
        await store.finish_delivery(
            db=self.db,
            delivery_id=delivery.id,
            status=status,
            attempts=attempts,
            http_status=http_status,
            error=error,
        )
        if self.metrics is not None:
            self.metrics.alert_deliveries.labels(status).inc()
        if status != "delivered":
            log.warning(
                "webhook %s: %s gave up after %d attempt(s): %s",
                hook.name,
                delivery.event_key,
                attempts,
                error,
            )
        return status

    async def _send(self, hook: Webhook, body: dict[str, Any]) -> tuple[str, int, int | None, str | None]:
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"content-type": "application/json", "user-agent": "fieldlab-webhook/1"}
        if hook.secret:
            digest = hmac.new(hook.secret.encode(), data, hashlib.sha256).hexdigest()
            headers["x-fieldlab-signature"] = f"sha256={digest}"
        http_status: int | None = None
        error: str | None = None
        for attempt in range(1, self.retries + 2):
            try:
                response = await self._client.post(hook.url, content=data, headers=headers)
            except httpx.HTTPError as exc:
                http_status, error = None, f"{type(exc).__name__}: {exc}"[:1000]
            else:
                http_status = response.status_code
                if response.is_success:
                    return "delivered", attempt, http_status, None
                error = f"HTTP {http_status}: {response.text[:200]}"
                if http_status < 500 and http_status not in (408, 429):
                    return "failed", attempt, http_status, error
            if attempt <= self.retries:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        return "failed", self.retries + 1, http_status, error
