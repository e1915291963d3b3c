"""Alerts end to end on both databases: evaluations in, state transitions, webhook notifications
to a real local receiver (generic JSON and Slack), retries with backoff, the delivery log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
from dataclasses import replace
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.budgets import store
from app.budgets.alerts import AlertEvent, AlertPolicy
from app.budgets.notify import WebhookNotifier, payload_for
from app.budgets.service import BudgetService
from app.budgets.verdict import Status, Verdict
from app.config import Settings
from app.db import Database, now_ms
from app.models import Check
from tests.conftest import make_site, make_token
from tests.integration.webhook_receiver import Receiver

Client = AsyncTestClient[Litestar]
BUDGET = "field:shop:LCP:p75:/product/:id:mobile"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(
        settings, alert_k=2, alert_n=3, webhook_retries=3, webhook_backoff_s=0.05, webhook_timeout_s=5.0
    )


def verdict_body(status: Status, actual: float) -> dict[str, Any]:
    limit = 2000.0 if status == "warn" else 2500.0
    return {
        "budget_id": BUDGET,
        "name": "LCP p75 /product/:id mobile",
        "status": status,
        "actual": actual,
        "limit": limit,
        "margin": limit - actual,
        "unit": "ms",
        "samples": 640,
    }


async def evaluate(client: Client, scope: str, status: Status, actual: float) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/budget-status", json={"scope": scope, "verdicts": [verdict_body(status, actual)]}
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def add_hook(client: Client, url: str, **extra: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/webhooks", json={"url": url, **extra})
    assert r.status_code == 201, r.text
    hook: dict[str, Any] = r.json()
    return hook


async def test_notifications_follow_state_changes_only(client: Client, receiver: Receiver) -> None:
    await add_hook(client, f"{receiver.url}/generic", name="ops")
    await add_hook(client, f"{receiver.url}/slack", format="slack")
    scope = "site:1"
    # K=2 of N=3. pass, fail (1 of 2), fail -> failing; more fails; one pass keeps 2 of 3 -> still
    # failing; a second pass -> recovered; then quiet.
    sequence: list[tuple[Status, float]] = [
        ("pass", 2100),
        ("fail", 3100),
        ("fail", 3300),
        ("fail", 3200),
        ("fail", 3000),
        ("pass", 2200),
        ("pass", 2150),
        ("pass", 2100),
    ]
    fired = [(await evaluate(client, scope, status, actual))["events"] for status, actual in sequence]
    assert [len(e) for e in fired] == [0, 0, 1, 0, 0, 0, 1, 0]
    assert fired[2] == [{"kind": "failing", "band": "fail", "budget_id": BUDGET}]
    assert fired[6] == [{"kind": "recovered", "band": "fail", "budget_id": BUDGET}]

    generic = [r.json() for r in receiver.on("/generic")]
    assert [g["event"] for g in generic] == ["failing", "recovered"]  # no duplicates, nothing while unchanged
    failing, recovered = generic
    assert failing["budget"] == {"id": BUDGET, "name": "LCP p75 /product/:id mobile"}
    assert failing["scope"] == scope
    assert failing["band"] == "fail"
    assert failing["status"] == "fail"
    assert failing["actual"] == 3300
    assert failing["limit"] == 2500
    assert failing["samples"] == 640
    assert (
        failing["text"]
        == "FAIL LCP p75 /product/:id mobile is failing: 3,300 ms (limit 2,500 ms, 640 samples)"
    )
    assert recovered["failing_since"] == failing["at"]
    assert recovered["failing_for_s"] is not None
    assert recovered["failing_for_s"] >= 0
    assert "recovered after failing for" in recovered["text"]

    slack = [r.json() for r in receiver.on("/slack")]
    assert len(slack) == 2
    assert slack[0]["text"].startswith(":red_circle: FAIL LCP p75")
    assert slack[1]["text"].startswith(
        ":large_green_circle: FAIL LCP p75 /product/:id mobile recovered after"
    )
    assert slack[0]["blocks"][0]["text"]["type"] == "mrkdwn"
    assert all(r.headers["content-type"] == "application/json" for r in receiver.received)

    log = (await client.get("/api/v1/webhooks/deliveries")).json()
    assert len(log) == 4
    assert {(d["event"], d["status"], d["attempts"], d["http_status"]) for d in log} == {
        ("failing", "delivered", 1, 200),
        ("recovered", "delivered", 1, 200),
    }
    states = (await client.get("/api/v1/alerts", params={"scope": scope})).json()
    assert len(states) == 1
    assert states[0]["bands"]["fail"]["state"] == "ok"
    assert states[0]["summary"] == "ok"
    history = (await client.get("/api/v1/budget-status", params={"scope": scope})).json()
    assert [h["status"] for h in history] == [s for s, _ in reversed(sequence)]
    assert history[0]["limit"] == 2500
    assert history[0]["actual"] == 2100


async def test_warn_band_alerts_apart_from_fail(client: Client, receiver: Receiver) -> None:
    await add_hook(client, f"{receiver.url}/w")
    for status, actual in [
        ("warn", 2200),
        ("warn", 2300),
        ("fail", 2700),
        ("fail", 2800),
        ("warn", 2300),
        ("warn", 2200),
        ("pass", 1500),
        ("pass", 1500),
    ]:
        await evaluate(client, "check:4", status, actual)
    events = [(b["event"], b["band"]) for b in (r.json() for r in receiver.on("/w"))]
    assert events == [("failing", "warn"), ("failing", "fail"), ("recovered", "fail"), ("recovered", "warn")]


async def test_insufficient_data_sends_nothing(client: Client, receiver: Receiver) -> None:
    await add_hook(client, f"{receiver.url}/i")
    for _ in range(5):
        body = await evaluate(client, "site:2", "insufficient-data", 0)
        assert body["events"] == []
    assert receiver.received == []
    states = (await client.get("/api/v1/alerts")).json()
    assert states[0]["summary"] == "ok"
    assert states[0]["last_status"] == "insufficient-data"


async def test_webhook_scope_limits_what_it_receives(client: Client, receiver: Receiver) -> None:
    await add_hook(client, f"{receiver.url}/site1", scope="site:1")
    await add_hook(client, f"{receiver.url}/all")
    for _ in range(2):
        await evaluate(client, "site:2", "fail", 3000)
    assert len(receiver.on("/all")) == 1
    assert receiver.on("/site1") == []


async def test_webhook_input_errors_name_the_field(client: Client) -> None:
    cases = [
        ({"url": "ftp://x"}, "url"),
        ({"url": "http://h/", "format": "teams"}, "format"),
        ({"url": "http://h/", "scope": "everything"}, "scope"),
    ]
    for body, field in cases:
        r = await client.post("/api/v1/webhooks", json=body)
        assert r.status_code == 400, r.text
        assert field in r.json()["detail"]
    r = await client.post(
        "/api/v1/budget-status",
        json={"scope": "site:1", "verdicts": [{"budget_id": "x", "name": "x", "status": "bad"}]},
    )
    assert r.status_code == 400
    assert "status" in r.text
    assert (await client.delete("/api/v1/webhooks/999")).status_code == 404
    r = await client.get("/api/v1/webhooks", headers={"authorization": "Bearer nope"})
    assert r.status_code == 401


# --- the notifier on its own: retries, backoff, give-up, no duplicates, signatures -------------


def event(kind: str = "failing", at_ms: int = 1_700_000_000_000) -> AlertEvent:
    v = Verdict(BUDGET, "LCP p75", "fail", 3000.0, 2500.0, -500.0, "ms", 100)
    return AlertEvent(kind, "fail", v, at_ms, at_ms - 7_500_000 if kind == "recovered" else at_ms)  # type: ignore[arg-type]


def notifier(db: Database, retries: int = 3) -> WebhookNotifier:
    return WebhookNotifier(db=db, timeout_s=5.0, retries=retries, backoff_s=0.05)


async def test_retries_with_backoff_on_5xx_then_delivers(db: Database, receiver: Receiver) -> None:
    hook = await store.create_webhook(db=db, name="r", url=f"{receiver.url}/retry")
    receiver.script.extend([500, 503])
    n = notifier(db)
    try:
        assert await n.deliver(hook, event(), "site:1") == "delivered"
    finally:
        await n.close()
    got = receiver.on("/retry")
    assert [r.answered for r in got] == [500, 503, 200]
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1
    assert len({r.body for r in got}) == 1  # the same body each time
    [row] = await store.list_deliveries(db=db)
    assert (row.status, row.attempts, row.http_status, row.error) == ("delivered", 3, 200, None)
    assert row.finished_ms is not None
    assert row.payload["event"] == "failing"


async def test_gives_up_after_the_retries_and_logs_why(db: Database, receiver: Receiver) -> None:
    hook = await store.create_webhook(db=db, name="down", url=f"{receiver.url}/down")
    receiver.script.extend([502] * 10)
    n = notifier(db, retries=2)
    try:
        assert await n.deliver(hook, event(), "site:1") == "failed"
    finally:
        await n.close()
    assert len(receiver.on("/down")) == 3
    [row] = await store.list_deliveries(db=db)
    assert (row.status, row.attempts, row.http_status) == ("failed", 3, 502)
    assert row.error is not None
    assert "HTTP 502" in row.error


async def test_a_4xx_is_final_and_an_unreachable_host_is_retried(db: Database, receiver: Receiver) -> None:
    bad = await store.create_webhook(db=db, name="bad", url=f"{receiver.url}/gone")
    receiver.script.append(404)
    closed = Receiver()
    dead_url = closed.url
    closed._server.server_close()  # a port nothing listens on any more
    dead = await store.create_webhook(db=db, name="dead", url=f"{dead_url}/x")
    n = notifier(db, retries=1)
    try:
        assert await n.deliver(bad, event(), "site:1") == "failed"
        assert await n.deliver(dead, event(), "site:1") == "failed"
    finally:
        await n.close()
    assert len(receiver.on("/gone")) == 1
    rows = {r.webhook_id: r for r in await store.list_deliveries(db=db)}
    assert rows[bad.id].attempts == 1
    assert rows[bad.id].http_status == 404
    assert rows[dead.id].attempts == 2
    assert rows[dead.id].http_status is None
    assert "ConnectError" in (rows[dead.id].error or "")  # type: ignore[index]


async def test_the_same_event_is_never_delivered_twice(db: Database, receiver: Receiver) -> None:
    hook = await store.create_webhook(db=db, name="once", url=f"{receiver.url}/once")
    n = notifier(db)
    try:
        ev = event()
        outcomes = await asyncio.gather(n.deliver(hook, ev, "site:1"), n.deliver(hook, ev, "site:1"))
        assert sorted(map(str, outcomes)) == ["None", "delivered"]  # e.g. two workers racing
        assert await n.deliver(hook, ev, "site:1") is None
        assert await n.deliver(hook, event("recovered", ev.at_ms + 60_000), "site:1") == "delivered"
    finally:
        await n.close()
    assert [r.json()["event"] for r in receiver.on("/once")] == ["failing", "recovered"]
    assert len(await store.list_deliveries(db=db)) == 2


async def test_notifications_survive_a_stop_between_commit_and_send(
    db: Database, settings: Settings, receiver: Receiver
) -> None:
    await store.create_webhook(db=db, name="later", url=f"{receiver.url}/later")
    v = Verdict(BUDGET, "LCP p75", "fail", 3000.0, 2500.0, -500.0, "ms", 100)
    policy = AlertPolicy(k=1, n=1)
    # The state moves and the notification is queued in one transaction; nothing is sent (as if
    # the process stopped right after the commit).
    recorded = await store.record_verdicts(
        db=db, scope="site:1", verdicts=[v], policy=policy, payload_for=payload_for, at_ms=1_700_000_000_000
    )
    assert [e.kind for e in recorded.events] == ["failing"]
    assert [d.status for d in await store.list_deliveries(db=db)] == ["pending"]
    n = notifier(db)
    try:
        # Young pending rows may be in flight in another process: left alone.
        assert await n.resend_stale(now_ms=now_ms()) == 0
        assert await n.resend_stale(now_ms=now_ms() + 3_600_000) == 1
        assert await n.resend_stale(now_ms=now_ms() + 3_600_000) == 0
    finally:
        await n.close()
    assert [r.json()["event"] for r in receiver.on("/later")] == ["failing"]
    assert [d.status for d in await store.list_deliveries(db=db)] == ["delivered"]


async def test_signed_bodies(db: Database, receiver: Receiver) -> None:
    hook = await store.create_webhook(db=db, name="signed", url=f"{receiver.url}/signed", secret="s3cret")
    n = notifier(db)
    try:
        await n.deliver(hook, event("recovered"), "check:9")
    finally:
        await n.close()
    [got] = receiver.on("/signed")
    expected = hmac.new(b"s3cret", got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-fieldlab-signature"] == f"sha256={expected}"
    assert got.json()["failing_for_s"] == 7500
    assert got.json()["text"].endswith(
        "recovered after failing for 2h 5m: 3,000 ms (limit 2,500 ms, 100 samples)"
    )


async def test_renotify_through_the_service(db: Database, settings: Settings, receiver: Receiver) -> None:
    await store.create_webhook(db=db, name="r", url=f"{receiver.url}/again")
    service = BudgetService(
        db=db, settings=replace(settings, alert_k=1, alert_n=1, alert_renotify_s=600), notifier=notifier(db)
    )
    v = Verdict(BUDGET, "LCP p75", "fail", 3000.0, 2500.0, -500.0, "ms", 100)
    try:
        for minute in range(31):
            await service.record("site:1", [v], at_ms=1_700_000_000_000 + minute * 60_000)
    finally:
        await service.close()
    assert [r.json()["event"] for r in receiver.on("/again")] == [
        "failing",
        "still-failing",
        "still-failing",
        "still-failing",
    ]


async def test_a_ci_upload_of_many_verdicts_is_accepted(client: Client) -> None:
    many = [verdict_body("pass", 2000) | {"budget_id": f"b{i}", "detail": "d" * 2000} for i in range(1000)]
    r = await client.post("/api/v1/budget-status", json={"scope": "gate:main", "verdicts": many})
    assert r.status_code == 201, r.text[:300]
    assert r.json()["stored"] == 1000
    r = await client.post("/api/v1/budget-status", json={"scope": "gate:main", "verdicts": [*many, many[0]]})
    assert r.status_code == 400
    assert "verdicts" in r.json()["detail"]
    r = await client.post("/api/v1/budget-status", json={"scope": "no scope", "verdicts": []})
    assert r.status_code == 400
    assert "scope" in r.json()["detail"]


async def test_who_may_store_and_read_budget_status(client: Client, db: Database, settings: Settings) -> None:
    """CI uploads with a deploy token, not an admin one; a token limited to a site reaches that
    site's scopes (its checks' too) and nothing else, gate:BRANCH scopes included."""
    a, b = (await make_site(client))["id"], (await make_site(client))["id"]
    async with db.write() as session:
        check = Check(name="a-home", kind="flow", target="https://a.example/", site_id=a,
                      steps=[{"goto": "/"}], created_ms=now_ms())  # fmt: skip
        session.add(check)
    scopes = {
        "site-a": f"site:{a}",
        "check-a": f"check:{check.id}",
        "site-b": f"site:{b}",
        "gate": "gate:main",
    }
    tokens = [
        ("deploy", "deploy", None),
        ("deploy-a", "deploy", a),
        ("read", "read", None),
        ("read-a", "read", a),
    ]
    bearer = {
        name: {"authorization": f"Bearer {await make_token(client, scope, site)}"}
        for name, scope, site in tokens
    }

    async def post(who: str, scope: str) -> Any:
        body = {"scope": scopes[scope], "verdicts": [verdict_body("pass", 1500)]}
        return await client.post("/api/v1/budget-status", json=body, headers=bearer[who])

    for scope in scopes:
        assert (await post("deploy", scope)).status_code == 201, scope
    for scope in ("site-a", "check-a"):
        assert (await post("deploy-a", scope)).status_code == 201, scope
    r = await post("deploy-a", "site-b")
    assert r.status_code == 403
    assert r.json()["detail"] == f"this token is limited to site {a}; scope 'site:{b}' belongs to site {b}"
    r = await post("deploy-a", "gate")
    assert r.status_code == 403
    assert "belongs to no site" in r.json()["detail"]
    r = await post("read", "gate")
    assert r.status_code == 403
    assert (
        r.json()["detail"]
        == "storing budget status needs an admin or a deploy token (this one has scope 'read')"
    )

    async def history(who: str, scope: str) -> Any:
        return await client.get("/api/v1/budget-status", params={"scope": scopes[scope]}, headers=bearer[who])

    assert len((await history("read-a", "site-a")).json()) == 2  # the deploy tokens' two uploads
    assert len((await history("read-a", "check-a")).json()) == 2
    assert (await history("read-a", "site-b")).status_code == 403
    assert (await history("read-a", "gate")).status_code == 403
    assert len((await history("read", "gate")).json()) == 1

    # fieldlab's own health alerts (scope "self") are the admin's, as the Health page is.
    own = BudgetService(db=db, settings=settings, notifier=notifier(db))
    await own.record("self", [Verdict("self:disk-free", "free disk", "pass", 900.0, 500.0, 400.0, "MB")])
    await own.close()
    seen = {s["scope"] for s in (await client.get("/api/v1/alerts", headers=bearer["read-a"])).json()}
    assert seen == {scopes["site-a"], scopes["check-a"]}
    seen = {s["scope"] for s in (await client.get("/api/v1/alerts", headers=bearer["read"])).json()}
    assert seen == set(scopes.values())
    assert {s["scope"] for s in (await client.get("/api/v1/alerts")).json()} == {*scopes.values(), "self"}
    for who in ("read", "read-a"):
        r = await client.get("/api/v1/alerts", params={"scope": "self"}, headers=bearer[who])
        assert r.status_code == 403
        assert r.json()["detail"] == "scope 'self' (fieldlab's own health) needs an admin token"
    r = await client.get("/api/v1/alerts", params={"scope": scopes["gate"]}, headers=bearer["read-a"])
    assert r.status_code == 403


async def test_a_test_notification_arrives_in_the_webhooks_format_and_is_logged(
    client: Client, receiver: Receiver
) -> None:
    generic = await add_hook(client, f"{receiver.url}/generic", name="ops", secret="s3cret", scope="site:1")
    slack = await add_hook(client, f"{receiver.url}/slack", format="slack", name="team")
    sent = await client.post(f"/api/v1/webhooks/{generic['id']}/test")
    assert sent.status_code == 200, sent.text
    logged = sent.json()
    assert (logged["status"], logged["http_status"], logged["event"], logged["scope"]) == (
        "delivered", 200, "test", "site:1"
    )  # fmt: skip
    [got] = receiver.on("/generic")
    body = got.json()
    assert (body["event"], body["budget"]["id"]) == ("test", "test")
    assert body["text"].startswith("TEST fieldlab test notification: webhook 'ops' reaches this channel")
    expected = hmac.new(b"s3cret", got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-fieldlab-signature"] == f"sha256={expected}"

    receiver.script.extend([404])  # a wrong Slack URL: final, reported, logged
    failed = (await client.post(f"/api/v1/webhooks/{slack['id']}/test")).json()
    assert (failed["status"], failed["http_status"], failed["attempts"]) == ("failed", 404, 1)
    assert receiver.on("/slack")[0].json()["text"].startswith(":bell: TEST fieldlab test notification")
    log = (await client.get("/api/v1/webhooks/deliveries")).json()
    assert [d["event"] for d in log] == ["test", "test"]
    assert (await client.post("/api/v1/webhooks/999/test")).status_code == 404
