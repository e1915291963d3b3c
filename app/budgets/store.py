"""Storage for budgets and alerts: deploy markers, status history, alert state, webhooks and the
delivery log. Keyword-only data functions, as elsewhere; routes and jobs call these."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from app.budgets.alerts import AlertEvent, AlertPolicy, BudgetState, step
from app.budgets.verdict import Verdict
from app.db import Database, now_ms
from app.models import AlertState, BudgetStatus, Check, DeployMarker, Site, Webhook, WebhookDelivery, table
from app.selfalerts import SCOPE as SELF_SCOPE
from app.sites import InvalidInput, Principal

FORMATS = ("json", "slack")


def iso_ms(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC with a ``Z`` (how the API and notices show times)."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def marker_dict(m: DeployMarker) -> dict[str, Any]:
    """A deploy marker as the API answers it (and the CLI prints it)."""
    return {
        "id": m.id,
        "site_id": m.site_id,
        "commit": m.commit_sha,
        "branch": m.branch,
        "message": m.message,
        "time": iso_ms(m.ts),
        "ts": m.ts,
    }


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


# --- deploy markers -------------------------------------------------------------------------


async def add_marker(
    *, db: Database, site_id: int, commit: str, branch: str, message: str = "", ts_ms: int | None = None
) -> DeployMarker:
    commit, branch = commit.strip(), branch.strip()
    if not commit or len(commit) > 64:
        raise InvalidInput("commit: must be 1 to 64 characters")
    if not branch or len(branch) > 200:
        raise InvalidInput("branch: must be 1 to 200 characters")
    if len(message) > 1000:
        raise InvalidInput("message: at most 1000 characters")
    created = now_ms()
    marker = DeployMarker(
        site_id=site_id,
        commit_sha=commit,
        branch=branch,
        message=message,
        ts=created if ts_ms is None else ts_ms,
        created_ms=created,
    )
    async with db.write() as session:
        if await session.get(Site, site_id) is None:
            raise LookupError(f"no site with id {site_id}")
        session.add(marker)
    return marker


async def list_markers(
    *,
    db: Database,
    site_id: int,
    since_ms: int | None = None,
    until_ms: int | None = None,
    branch: str | None = None,
    limit: int = 100,
) -> list[DeployMarker]:
    """Newest first."""
    query = select(DeployMarker).where(DeployMarker.site_id == site_id)
    if since_ms is not None:
        query = query.where(DeployMarker.ts >= since_ms)
    if until_ms is not None:
        query = query.where(DeployMarker.ts < until_ms)
    if branch:
        query = query.where(DeployMarker.branch == branch)
    query = query.order_by(col(DeployMarker.ts).desc(), col(DeployMarker.id).desc()).limit(limit)
    async with db.read() as session:
        return list((await session.exec(query)).all())


async def delete_marker(*, db: Database, site_id: int, marker_id: int) -> bool:
    """Remove a marker recorded by mistake; comparisons then start at the one before it."""
    async with db.write() as session:
        result = await session.exec(
            sa.delete(DeployMarker).where(DeployMarker.site_id == site_id, DeployMarker.id == marker_id)  # type: ignore[arg-type]
        )
        return bool(result.rowcount)


async def find_marker(*, db: Database, site_id: int, ref: str) -> DeployMarker | None:
    """``latest``, a marker id, or a commit (prefix of at least 4 characters), newest first."""
    query = select(DeployMarker).where(DeployMarker.site_id == site_id)
    if ref == "latest":
        pass
    elif ref.isdigit() and len(ref) < 10:
        query = query.where(DeployMarker.id == int(ref))
    elif len(ref) >= 4:
        query = query.where(col(DeployMarker.commit_sha).startswith(ref, autoescape=True))
    else:
        raise InvalidInput("marker: give 'latest', a marker id or at least 4 characters of a commit")
    query = query.order_by(col(DeployMarker.ts).desc()).limit(1)
    async with db.read() as session:
        return (await session.exec(query)).first()


# --- status history and alert state ---------------------------------------------------------


def _status_row(scope: str, v: Verdict, at_ms: int, run_id: int | None) -> dict[str, Any]:
    return {
        "scope": scope,
        "budget_id": v.budget_id[:512],
        "name": v.name[:512],
        "status": v.status,
        "actual": v.actual,
        "limit_value": v.limit,
        "margin": v.margin,
        "unit": v.unit[:16],
        "samples": v.samples,
        "detail": v.detail[:2048],
        "run_id": run_id,
        "evaluated_ms": at_ms,
    }


PayloadFor = Callable[[str, AlertEvent, str], dict[str, Any]]  # (format, event, scope) -> body


@dataclass(frozen=True, slots=True)
class Recorded:
    events: list[AlertEvent]
    deliveries: list[int]  # ids of the pending webhook_delivery rows the events queued


async def record_verdicts(
    *,
    db: Database,
    scope: str,
    verdicts: Sequence[Verdict],
    policy: AlertPolicy,
    payload_for: PayloadFor,
    at_ms: int | None = None,
    run_id: int | None = None,
) -> Recorded:
    """Store one evaluation's verdicts, advance each budget's alert state, and queue the
    notifications its transitions cause, all in one transaction: a crash after it still leaves
    the notifications in the delivery log (as ``pending``), and one before it leaves nothing.

    Rows are locked (``FOR UPDATE`` on PostgreSQL, in budget order; the write lock on SQLite) so
    two evaluations of the same budgets at once, e.g. from two workers, take turns instead of
    both firing.
    """
    at = now_ms() if at_ms is None else at_ms
    latest: dict[str, Verdict] = {}
    for v in verdicts:
        latest[v.budget_id[:512]] = v  # one state step per budget per evaluation
    if not latest:
        return Recorded([], [])
    events: list[AlertEvent] = []
    async with db.write() as session:
        conn = await session.connection()
        await conn.execute(
            sa.insert(table(BudgetStatus)), [_status_row(scope, v, at, run_id) for v in verdicts]
        )
        seed = _insert(conn.dialect.name)(table(AlertState)).on_conflict_do_nothing()
        await conn.execute(
            seed,
            [
                {
                    "scope": scope,
                    "budget_id": bid,
                    "name": latest[bid].name[:512],
                    "summary": "ok",
                    "bands": {},
                    "last_status": latest[bid].status,
                    "updated_ms": at,
                }
                for bid in sorted(latest)
            ],
        )
        rows = (
            await session.exec(
                select(AlertState)
                .where(AlertState.scope == scope, col(AlertState.budget_id).in_(list(latest)))
                .order_by(col(AlertState.budget_id))
                .with_for_update()
            )
        ).all()
        for row in rows:
            verdict = latest[row.budget_id]
            new, fired = step(BudgetState.from_dict(row.bands), verdict, now_ms=at, policy=policy)
            row.bands = new.to_dict()
            row.summary = new.summary
            row.name = verdict.name[:512]
            row.last_status = verdict.status
            row.updated_ms = at
            session.add(row)
            events.extend(fired)
        deliveries = []
        if events:
            hooks = (await session.exec(_hooks_for(scope))).all()
            for event in events:
                for hook in hooks:
                    assert hook.id is not None
                    body = payload_for(hook.format, event, scope)
                    new_id = await _claim(conn, hook.id, event, scope, body)
                    if new_id is not None:
                        deliveries.append(new_id)
    return Recorded(events, deliveries)


async def status_history(
    *, db: Database, scope: str, budget_id: str | None = None, since_ms: int | None = None, limit: int = 500
) -> list[BudgetStatus]:
    """Newest first."""
    query = select(BudgetStatus).where(BudgetStatus.scope == scope)
    if budget_id is not None:
        query = query.where(BudgetStatus.budget_id == budget_id)
    if since_ms is not None:
        query = query.where(BudgetStatus.evaluated_ms >= since_ms)
    query = query.order_by(col(BudgetStatus.evaluated_ms).desc(), col(BudgetStatus.id).desc()).limit(limit)
    async with db.read() as session:
        return list((await session.exec(query)).all())


async def latest_verdicts(
    *, db: Database, states: Sequence[AlertState]
) -> dict[tuple[str, str], BudgetStatus]:
    """Each state's latest verdict row, keyed by (scope, budget_id): the row its evaluation
    stored at the state's ``updated_ms`` (the same instant, see :func:`record_verdicts`)."""
    if not states:
        return {}
    s = table(BudgetStatus).c
    keys = [(a.scope, a.budget_id, a.updated_ms) for a in states]
    latest: dict[tuple[str, str], BudgetStatus] = {}
    async with db.read() as session:
        for start in range(0, len(keys), 300):  # bounded IN lists
            query = (
                select(BudgetStatus)
                .where(sa.tuple_(s.scope, s.budget_id, s.evaluated_ms).in_(keys[start : start + 300]))
                .order_by(col(BudgetStatus.id))
            )
            for row in (await session.exec(query)).all():
                latest[(row.scope, row.budget_id)] = row  # a budget twice in one evaluation: its last
    return latest


def _scope_id(scope: str, kind: str) -> int | None:
    prefix = f"{kind}:"
    rest = scope[len(prefix) :] if scope.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


async def scope_sites(*, db: Database, scopes: Iterable[str]) -> dict[str, int | None]:
    """The site each budget scope belongs to: ``site:N`` is site N, ``check:N`` its check's
    site (None for a check of no site, or no such check); any other scope (``gate:BRANCH``, a
    caller's label) belongs to none."""
    wanted = set(scopes)
    check_ids = {cid for s in wanted if (cid := _scope_id(s, "check")) is not None}
    check_sites: dict[int, int | None] = {}
    if check_ids:
        async with db.read() as session:
            rows = await session.exec(select(Check.id, Check.site_id).where(col(Check.id).in_(check_ids)))
            check_sites = {cid: sid for cid, sid in rows.all() if cid is not None}
    out: dict[str, int | None] = {}
    for s in wanted:
        if (sid := _scope_id(s, "site")) is not None:
            out[s] = sid
        elif (cid := _scope_id(s, "check")) is not None:
            out[s] = check_sites.get(cid)
        else:
            out[s] = None
    return out


async def visible_states(*, db: Database, principal: Principal, states: list[AlertState]) -> list[AlertState]:
    """The alert states a token may see: every one for an admin; for others not fieldlab's own
    health (``self``, the admin's, like the dashboard's Health page), and for a token limited
    to one site only that site's scopes."""
    if principal.scope == "admin":
        return states
    states = [a for a in states if a.scope != SELF_SCOPE]
    if principal.site_id is None:
        return states
    owners = await scope_sites(db=db, scopes={a.scope for a in states})
    return [a for a in states if principal.can_see_scope(owners[a.scope])]


async def alert_states(*, db: Database, scope: str | None = None) -> list[AlertState]:
    query = select(AlertState)
    if scope is not None:
        query = query.where(AlertState.scope == scope)
    async with db.read() as session:
        return list((await session.exec(query.order_by(AlertState.scope, AlertState.budget_id))).all())


# --- webhooks and their delivery log --------------------------------------------------------


def validate_webhook(*, url: str, fmt: str, scope: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"url: {url[:100]!r} is not an http(s) URL")
    if fmt not in FORMATS:
        raise InvalidInput(f"format: must be one of {', '.join(FORMATS)}, not {fmt!r}")
    scoped = scope.startswith(("site:", "check:")) and scope.split(":", 1)[1].isdigit()
    if scope and scope != "self" and not scoped:
        raise InvalidInput(f"scope: must be empty, 'self', 'site:<id>' or 'check:<id>', not {scope!r}")


async def create_webhook(
    *, db: Database, name: str, url: str, fmt: str = "json", scope: str = "", secret: str = ""
) -> Webhook:
    validate_webhook(url=url, fmt=fmt, scope=scope)
    hook = Webhook(
        name=name or urlsplit(url).hostname or "webhook",
        url=url,
        format=fmt,
        scope=scope,
        secret=secret,
        created_ms=now_ms(),
    )
    async with db.write() as session:
        session.add(hook)
    return hook


async def get_webhook(*, db: Database, webhook_id: int) -> Webhook | None:
    async with db.read() as session:
        return await session.get(Webhook, webhook_id)


async def list_webhooks(
    *, db: Database, scope: str | None = None, enabled_only: bool = False
) -> list[Webhook]:
    """All webhooks, or those that receive ``scope``'s alerts (their own scope or every scope)."""
    query = select(Webhook)
    if scope is not None:
        query = query.where(col(Webhook.scope).in_(["", scope]))
    if enabled_only:
        query = query.where(col(Webhook.enabled).is_(True))
    async with db.read() as session:
        return list((await session.exec(query.order_by(col(Webhook.id)))).all())


async def delete_webhook(*, db: Database, webhook_id: int) -> bool:
    async with db.write() as session:
        hook = await session.get(Webhook, webhook_id)
        if hook is None:
            return False
        await session.exec(sa.delete(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == webhook_id))
        await session.delete(hook)
    return True


def _hooks_for(scope: str) -> Any:
    return (
        select(Webhook)
        .where(col(Webhook.scope).in_(["", scope]), col(Webhook.enabled).is_(True))
        .order_by(col(Webhook.id))
    )


async def _claim(
    conn: AsyncConnection, webhook_id: int, event: AlertEvent, scope: str, body: dict[str, Any]
) -> int | None:
    stmt = (
        _insert(conn.dialect.name)(table(WebhookDelivery))
        .values(
            webhook_id=webhook_id,
            event_key=event.key[:700],
            event=event.kind,
            scope=scope,
            budget_id=event.verdict.budget_id[:512],
            status="pending",
            attempts=0,
            payload=body,
            created_ms=now_ms(),
        )
        .on_conflict_do_nothing()
        .returning(table(WebhookDelivery).c.id)
    )
    new_id = (await conn.execute(stmt)).scalar()
    return None if new_id is None else int(new_id)


async def claim_delivery(
    *, db: Database, webhook_id: int, event: AlertEvent, scope: str, payload: dict[str, Any]
) -> int | None:
    """Log a delivery as pending; None when this event was already claimed for this webhook."""
    async with db.write_conn() as conn:
        return await _claim(conn, webhook_id, event, scope, payload)


async def pending_deliveries(
    *, db: Database, ids: Sequence[int] | None = None, created_before_ms: int | None = None, limit: int = 500
) -> list[tuple[WebhookDelivery, Webhook]]:
    """Pending deliveries with their webhooks: the given ones, or those older than a time (left
    behind by a process that stopped before sending them)."""
    query = (
        select(WebhookDelivery, Webhook)
        .join(Webhook, col(Webhook.id) == col(WebhookDelivery.webhook_id))
        .where(WebhookDelivery.status == "pending")
    )
    if ids is not None:
        query = query.where(col(WebhookDelivery.id).in_(list(ids)))
    if created_before_ms is not None:
        query = query.where(WebhookDelivery.created_ms < created_before_ms)
    async with db.read() as session:
        rows = (await session.exec(query.order_by(col(WebhookDelivery.id)).limit(limit))).all()
    return [(d, h) for d, h in rows]


async def finish_delivery(
    *, db: Database, delivery_id: int, status: str, attempts: int, http_status: int | None, error: str | None
) -> None:
    async with db.write() as session:
        await session.exec(
            sa.update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == delivery_id)
            .values(
                status=status,
                attempts=attempts,
                http_status=http_status,
                error=None if error is None else error[:1000],
                finished_ms=now_ms(),
            )
        )


async def list_deliveries(
    *, db: Database, webhook_id: int | None = None, limit: int = 100, before_id: int | None = None
) -> list[WebhookDelivery]:
    """Newest first."""
    query = select(WebhookDelivery)
    if webhook_id is not None:
        query = query.where(WebhookDelivery.webhook_id == webhook_id)
    if before_id is not None:
        query = query.where(col(WebhookDelivery.id) < before_id)
    async with db.read() as session:
        return list((await session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit))).all())
