"""Reading budget files as plain data while remembering where each value came from.

YAML (and JSON, which is YAML) is composed into nodes rather than loaded, so a validation error
can name the line of the offending field: ``budgets.yml:14: budgets[2].fail: expected a number``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

Path_ = tuple[str | int, ...]
T = TypeVar("T")


class BudgetFileError(ValueError):
    """A budget file that cannot be used; the message names the file, line and field."""


@dataclass
class Document:
    """A parsed file: ``data`` as plain Python values, ``lines`` from a field path to its line."""

    path: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, where: Path_) -> int | None:
        """The line of ``where`` or of its nearest ancestor that has one."""
        while True:
            if where in self.lines:
                return self.lines[where]
            if not where:
                return None
            where = where[:-1]

    def error(self, where: Path_, message: str) -> BudgetFileError:
        line = self.line_of(where)
        place = f"{self.path}:{line}" if line is not None else self.path
        return BudgetFileError(f"{place}: {dotted(where) or '(top level)'}: {message}")


def dotted(where: Path_) -> str:
    out = ""
    for part in where:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _plain(node: yaml.Node, where: Path_, lines: dict[Path_, int]) -> Any:
    lines[where] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys stay the text written: YAML 1.1 would turn a key `off` into False.
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            out[key] = _plain(value_node, (*where, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*where, i), lines) for i, item in enumerate(node.value)]
    # Scalars go through the safe constructor so "2.5" is a float and "yes" stays PyYAML's.
    return yaml.safe_load(yaml.serialize(node))


def parse_text(text: str, name: str) -> Document:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise BudgetFileError(f"{where}: not valid YAML/JSON: {getattr(exc, 'problem', exc)}") from None
    if node is None:
        raise BudgetFileError(f"{name}: the file is empty")
    lines: dict[Path_, int] = {}
    return Document(name, _plain(node, (), lines), lines)


def read(path: str | Path) -> Document:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BudgetFileError(f"{path}: cannot read: {exc}") from None
    return parse_text(text, str(path))


_MSGSPEC_PATH = re.compile(r"`\$((?:\.[^.\[`]+|\[\d+\])*)`")


def convert(doc: Document, data: Any, kind: type[T], base: Path_ = ()) -> T:
    """``msgspec.convert`` with its error path turned into a line and a dotted field name."""
    try:
        return msgspec.convert(data, kind, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        found = _MSGSPEC_PATH.search(message)
        where: Path_ = base
        if found:
            for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", found.group(1)):
                where = (*where, part[0] if part[0] else int(part[1]))
            message = _MSGSPEC_PATH.sub("", message).replace(" - at ", "").strip()
        unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
        if unknown:  # point at the stray key's own line
            where, message = (*where, unknown.group(1)), "unknown field"
        raise doc.error(where, message) from None
