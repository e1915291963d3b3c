"""Where the rollup job's time goes, without editing app/: wrap its module-level functions with
timers (they call each other through module globals, so the wrappers are seen), and time every
SQL statement with SQLAlchemy cursor events, attributed to the innermost wrapped function.

The report gives, per function, wall seconds with and without its wrapped callees ("self"), and
per (function, statement kind), the driver-side statement time — so "rollup_hour self" minus its
SQL is Python work, and a statement whose time grows with the table shows up at once.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

_VERB = re.compile(r"^\s*(SELECT|INSERT|DELETE|UPDATE|WITH)\b.*?\b(?:FROM|INTO|UPDATE)\s+(\w+)", re.I | re.S)


def _statement_kind(statement: str) -> str:
    m = _VERB.match(statement)
    if m is None:
        return statement.split(None, 1)[0].upper() if statement.strip() else "?"
    return f"{m.group(1).upper()} {m.group(2)}"


class PhaseTimer:
    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self.child: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.sql: Counter[str] = Counter()
        self.sql_calls: Counter[str] = Counter()
        self._stack: list[str] = []
        self._restore: list[Callable[[], None]] = []

    def _enter(self, name: str) -> float:
        self._stack.append(name)
        return time.perf_counter()

    def _leave(self, name: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        self._stack.pop()
        self.total[name] += elapsed
        self.calls[name] += 1
        if self._stack:
            self.child[self._stack[-1]] += elapsed

    def wrap(self, module: ModuleType, names: tuple[str, ...]) -> None:
        for name in names:
            original = getattr(module, name, None)
            if original is None:
                continue  # renamed by someone since: time what still exists
            if inspect.iscoroutinefunction(original):

                @functools.wraps(original)
                async def async_wrapper(*a: Any, __f: Any = original, __n: str = name, **k: Any) -> Any:
                    started = self._enter(__n)
                    try:
                        return await __f(*a, **k)
                    finally:
                        self._leave(__n, started)

                setattr(module, name, async_wrapper)
            else:

                @functools.wraps(original)
                def sync_wrapper(*a: Any, __f: Any = original, __n: str = name, **k: Any) -> Any:
                    started = self._enter(__n)
                    try:
                        return __f(*a, **k)
                    finally:
                        self._leave(__n, started)

                setattr(module, name, sync_wrapper)
            self._restore.append(functools.partial(setattr, module, name, original))

    def watch(self, *engines: AsyncEngine) -> None:
        def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
            conn.info.setdefault("_bench_started", []).append(time.perf_counter())

        def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
            started = conn.info["_bench_started"].pop()
            key = f"{self._stack[-1] if self._stack else '-'}: {_statement_kind(statement)}"
            self.sql[key] += time.perf_counter() - started
            self.sql_calls[key] += 1

        for engine in {id(e): e for e in engines}.values():
            sa.event.listen(engine.sync_engine, "before_cursor_execute", before)
            sa.event.listen(engine.sync_engine, "after_cursor_execute", after)
            self._restore.append(
                functools.partial(sa.event.remove, engine.sync_engine, "before_cursor_execute", before)
            )
            self._restore.append(
                functools.partial(sa.event.remove, engine.sync_engine, "after_cursor_execute", after)
            )

    def restore(self) -> None:
        for undo in reversed(self._restore):
            undo()
        self._restore.clear()

    def report(self) -> dict[str, Any]:
        functions = {
            name: {
                "calls": self.calls[name],
                "seconds": round(self.total[name], 4),
                "self_seconds": round(self.total[name] - self.child[name], 4),
            }
            for name in sorted(self.total, key=lambda n: -self.total[n])
        }
        sql = {
            key: {"calls": self.sql_calls[key], "seconds": round(self.sql[key], 4)}
            for key in sorted(self.sql, key=lambda k: -self.sql[k])
        }
        return {"functions": functions, "sql": sql}


@contextmanager
def timed_phases(module: ModuleType, names: tuple[str, ...], *engines: AsyncEngine) -> Iterator[PhaseTimer]:
    timer = PhaseTimer()
    timer.wrap(module, names)
    timer.watch(*engines)
    try:
        yield timer
    finally:
        timer.restore()


def format_phases(report: dict[str, Any], wall_s: float, indent: str = "    ") -> list[str]:
    scale, unit = (1000.0, "ms") if wall_s < 10 else (1.0, "s")
    lines = []
    for name, f in report["functions"].items():
        lines.append(
            f"{indent}{name:<16} {f['seconds'] * scale:>8.1f} {unit} ({f['seconds'] / wall_s:5.1%})  "
            f"self {f['self_seconds'] * scale:>7.1f} {unit}  calls {f['calls']}"
        )
    for key, s in list(report["sql"].items())[:8]:
        lines.append(
            f"{indent}  sql {key:<34} {s['seconds'] * scale:>8.1f} {unit}  ({s['calls']} statements)"
        )
    return lines
