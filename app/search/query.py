"""Full-text search over log events, with filters, keyset-paginated events and groups.

The query language is small and the same on both backends: words (all must match), "quoted
phrases", and ``word*`` prefixes. Words are what both indexes see as words: runs of letters and
digits, so ``checkout.js`` is the phrase "checkout js" on both. Terms reach the database only as
letters and digits, so a query can never be read as FTS5 or tsquery syntax."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from app.db import Database
from app.models import LogEvent, table

_WORD = re.compile(r"[^\W_]+")
_CHUNK = re.compile(r'"([^"]*)"?|(\S+)')
SAMPLE_STACKS = 3
SAMPLE_SCAN = 50  # recent events looked at for distinct sample stacks
TOP_VALUES = 10


class QueryError(ValueError):
    """A search parameter is unusable; ``field`` names it for the 400 answer."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


class NotAllowed(QueryError):
    """The parameter asks for what this token may not see (403, not 400)."""


@dataclass(frozen=True, slots=True)
class Term:
    words: tuple[str, ...]
    prefix: bool = False


def parse_terms(q: str, *, max_terms: int = 16) -> list[Term]:
    terms: list[Term] = []
    for m in _CHUNK.finditer(q):
        quoted, bare = m.group(1), m.group(2)
        text = quoted if quoted is not None else bare
        words = tuple(w.lower() for w in _WORD.findall(text))
        if words:
            terms.append(Term(words, prefix=bare is not None and bare.endswith("*")))
    if len(terms) > max_terms:
        raise QueryError("q", f"at most {max_terms} words or phrases")
    return terms


def fts5_match(terms: list[Term]) -> str:
    return " AND ".join(f'"{" ".join(t.words)}"' + ("*" if t.prefix else "") for t in terms)


def tsquery(terms: list[Term]) -> str:
    parts = []
    for t in terms:
        words = list(t.words)
        if t.prefix:
            words[-1] += ":*"
        parts.append("(" + " <-> ".join(words) + ")")
    return " & ".join(parts)


@dataclass(frozen=True, slots=True)
class Filters:
    terms: list[Term] = field(default_factory=list)
    site_id: int | None = None
    only_sites: bool = False  # a site-limited reader never sees fieldlab's own (site-less) events
    kind: str | None = None
    level: str | None = None
    page_group: str | None = None
    since_ms: int = 0
    until_ms: int = 2**62


def _conditions(dialect: str, f: Filters) -> list[Any]:
    t = table(LogEvent)
    where: list[Any] = [t.c.ts >= f.since_ms, t.c.ts < f.until_ms]
    if f.site_id is not None:
        where.append(t.c.site_id == f.site_id)
    elif f.only_sites:
        where.append(t.c.site_id.is_not(None))
    for column, value in ((t.c.kind, f.kind), (t.c.level, f.level), (t.c.page_group, f.page_group)):
        if value is not None:
            where.append(column == value)
    if f.terms:
        if dialect == "postgresql":
            where.append(sa.literal_column("log_event.search").op("@@")(
                sa.func.to_tsquery(sa.literal_column("'simple'::regconfig"), tsquery(f.terms))))  # fmt: skip
        else:
            matches = sa.text("SELECT rowid FROM log_event_fts WHERE log_event_fts MATCH :fts").bindparams(
                fts=fts5_match(f.terms)
            )
            where.append(t.c.id.in_(matches))
    return where


def encode_cursor(ts: int, event_id: int) -> str:
    return f"{ts}.{event_id}"


def decode_cursor(raw: str) -> tuple[int, int]:
    ts, _, event_id = raw.partition(".")
    if not (ts.isdigit() and event_id.isdigit()):
        raise QueryError("cursor", f"{raw!r} is not a cursor this API returned")
    return int(ts), int(event_id)


_EVENT_FIELDS = ("id", "site_id", "kind", "level", "ts", "fingerprint", "message", "detail", "top_frame",
                 "url", "page_group", "browser", "source_id", "seq")  # fmt: skip


async def search_events(*, db: Database, filters: Filters, limit: int, cursor: str | None = None
                        ) -> dict[str, Any]:  # fmt: skip
    """Newest first. ``next`` continues after the last event (keyset: stable while new events
    arrive, and as cheap on page 100 as on page 1)."""
    t = table(LogEvent)
    async with db.read_engine.connect() as conn:
        where = _conditions(conn.dialect.name, filters)
        if cursor:
            ts, event_id = decode_cursor(cursor)
            where.append(sa.or_(t.c.ts < ts, sa.and_(t.c.ts == ts, t.c.id < event_id)))
        columns = [t.c[name] for name in _EVENT_FIELDS]
        stmt = sa.select(*columns).where(*where).order_by(t.c.ts.desc(), t.c.id.desc()).limit(limit + 1)
        rows = [dict(r._mapping) for r in await conn.execute(stmt)]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"events": rows, "next": encode_cursor(rows[-1]["ts"], rows[-1]["id"]) if more else None}


def _top(counts: Counter[str]) -> list[dict[str, Any]]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES]
    return [{"value": value, "count": n} for value, n in ranked]


async def search_groups(*, db: Database, filters: Filters, limit: int, offset: int = 0,
                        sort: str = "count") -> dict[str, Any]:  # fmt: skip
    """Matching events grouped by fingerprint: count, first and last seen within the filters,
    the page groups and browsers affected (top ten with counts), a few distinct sample stacks,
    and the latest event's message and top frame."""
    t = table(LogEvent)
    async with db.read_engine.connect() as conn:
        where = _conditions(conn.dialect.name, filters)
        # One pass over the matching events, by (fingerprint, page group, browser): the groups'
        # counts and times and their spread over page groups and browsers all come from it.
        cells = await conn.execute(
            sa.select(t.c.fingerprint, t.c.page_group, t.c.browser, sa.func.count().label("n"),
                      sa.func.min(t.c.ts).label("first"), sa.func.max(t.c.ts).label("last"),
                      sa.func.max(t.c.id).label("latest"))
            .where(*where).group_by(t.c.fingerprint, t.c.page_group, t.c.browser)
        )  # fmt: skip
        merged: dict[str, dict[str, Any]] = {}
        for c in cells:
            g = merged.setdefault(c.fingerprint, {"fingerprint": c.fingerprint, "count": 0, "first_seen_ms": c.first,
                                                  "last_seen_ms": c.last, "latest_id": c.latest,
                                                  "page_groups": Counter(), "browsers": Counter()})  # fmt: skip
            g["count"] += c.n
            g["first_seen_ms"] = min(g["first_seen_ms"], c.first)
            g["last_seen_ms"] = max(g["last_seen_ms"], c.last)
            g["latest_id"] = max(g["latest_id"], c.latest)
            g["page_groups"][c.page_group] += c.n
            g["browsers"][c.browser] += c.n
        if sort == "count":
            ranked = sorted(
                merged.values(), key=lambda g: (-g["count"], -g["last_seen_ms"], g["fingerprint"])
            )
        else:
            ranked = sorted(
                merged.values(), key=lambda g: (-g["last_seen_ms"], -g["count"], g["fingerprint"])
            )
        groups = ranked[offset : offset + limit]
        more = len(ranked) > offset + limit
        if not groups:
            return {"groups": [], "next_offset": None}
        fps = [g["fingerprint"] for g in groups]
        latest = {r.id: dict(r._mapping) for r in await conn.execute(
            sa.select(t.c.id, t.c.site_id, t.c.kind, t.c.level, t.c.message, t.c.top_frame)
            .where(t.c.id.in_([g["latest_id"] for g in groups])))}  # fmt: skip
        # Per group, the latest few events by the (fingerprint, ts) index: never a scan of all
        # of a frequent error's stacks.
        stacks: dict[str, list[str]] = {}
        for fp in fps:
            recent = await conn.execute(
                sa.select(t.c.detail).where(*where, t.c.fingerprint == fp, t.c.detail != "")
                .order_by(t.c.ts.desc()).limit(SAMPLE_SCAN)
            )  # fmt: skip
            stacks[fp] = list(dict.fromkeys(r.detail for r in recent))[:SAMPLE_STACKS]
    out = []
    for g in groups:
        head = latest[g["latest_id"]]
        out.append({
            "fingerprint": g["fingerprint"], "kind": head["kind"], "level": head["level"],
            "site_id": head["site_id"], "message": head["message"], "top_frame": head["top_frame"],
            "count": g["count"], "first_seen_ms": g["first_seen_ms"], "last_seen_ms": g["last_seen_ms"],
            "page_groups": _top(g["page_groups"]), "browsers": _top(g["browsers"]),
            "sample_stacks": stacks[g["fingerprint"]],
        })  # fmt: skip
    return {"groups": out, "next_offset": offset + limit if more else None}
