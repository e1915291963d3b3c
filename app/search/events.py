"""Log events from their sources, as plain dicts of log_event columns. Pure functions: the
indexing job and the log capture feed them rows and records and write what they return."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any

from app.search.fingerprint import fingerprint, normalise_location, top_frame

KINDS = ("js-error", "console-error", "failed-request", "fieldlab")
LEVELS = ("error", "warning", "critical")
MESSAGE_MAX = 2048
DETAIL_MAX = 4096


def _event(*, site_id: int | None, kind: str, level: str, ts: int, message: str, detail: str = "",
           frame: str = "", url: str = "", page_group: str = "", browser: str = "",
           source_id: int | None = None, seq: int = 0) -> dict[str, Any]:  # fmt: skip
    message = message.strip() or "(no message)"
    return {
        "site_id": site_id, "kind": kind, "level": level, "ts": ts,
        "fingerprint": fingerprint(kind, message, frame), "message": message[:MESSAGE_MAX],
        "detail": detail[:DETAIL_MAX], "top_frame": frame[:512], "url": url[:2048],
        "page_group": page_group[:256], "browser": browser[:32], "source_id": source_id, "seq": seq,
    }  # fmt: skip


def from_js_error(row: Mapping[str, Any]) -> dict[str, Any]:
    frame = top_frame(row["stack"] or "", source=row["source"] or "", line=int(row["line"] or 0))
    return _event(site_id=row["site_id"], kind="js-error", level="error", ts=row["ts"], message=row["message"],
                  detail=row["stack"] or "", frame=frame, url=row["url"], page_group=row["page_group"],
                  browser=row["browser"], source_id=row["id"])  # fmt: skip


def from_check_run(run: Mapping[str, Any], check_name: str, site_id: int | None) -> list[dict[str, Any]]:
    """A finished run's console errors and failed requests, one event each, numbered by ``seq``
    so indexing a run twice stores them once. The step is where the "top frame" would be:
    the same console error in two steps of a flow is two places in the code."""
    result = run.get("result") or {}
    steps = [s for s in result.get("steps") or [] if isinstance(s, dict)]
    ts = int(run.get("finished_ms") or run["started_ms"])
    events: list[dict[str, Any]] = []
    for step in steps:
        where = f"{check_name} / {step.get('name') or 'step'}"
        for item in step.get("console_errors") or []:
            if not isinstance(item, dict):
                continue
            url = str(item.get("url") or "")
            frame = f"{where}@{normalise_location(url)}" if url else where
            detail = f"check {check_name}, run {run['id']}, step {step.get('name')}; {item.get('type') or 'console'}"
            events.append(_event(site_id=site_id, kind="console-error", level="error", ts=ts,
                                 message=str(item.get("text") or ""), detail=detail, frame=frame, url=url,
                                 page_group=check_name, browser="Chromium", source_id=run["id"],
                                 seq=len(events)))  # fmt: skip
        for item in step.get("failed_requests") or []:
            if not isinstance(item, dict):
                continue
            url = str(item.get("url") or "")
            status = item.get("status")
            why = f"HTTP {status}" if status else str(item.get("error") or "failed")
            # The URL is in the message so a search finds it; the fingerprint collapses its ids.
            level = "warning" if isinstance(status, int) and status < 500 else "error"
            detail = f"check {check_name}, run {run['id']}, step {step.get('name')}; {item.get('type') or ''}"
            events.append(_event(site_id=site_id, kind="failed-request", level=level, ts=ts,
                                 message=f"{why} {url}", detail=detail, frame=where, url=url,
                                 page_group=check_name, browser="Chromium", source_id=run["id"],
                                 seq=len(events)))  # fmt: skip
    return events


def from_log_record(record: logging.LogRecord, request_id: str | None = None) -> dict[str, Any]:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string must not lose the record
        message = str(record.msg)
    detail = f"{record.name} {record.module}.{record.funcName}:{record.lineno}"
    if request_id:  # searching a request id from an access log line finds what it logged
        detail += f" request_id={request_id}"
    if record.exc_info and record.exc_info[1] is not None:
        detail += "\n" + "".join(traceback.format_exception(*record.exc_info))
    level = (
        "critical"
        if record.levelno >= logging.CRITICAL
        else "error"
        if record.levelno >= logging.ERROR
        else "warning"
    )
    return _event(site_id=None, kind="fieldlab", level=level, ts=int(record.created * 1000), message=message,
                  detail=detail, frame=f"{record.name}:{record.funcName}")  # fmt: skip
