"""Log output: JSON lines for machines, aligned text for a terminal, the request id in both."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from app.logs import configure_logging, request_id


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def log_lines(stream: io.StringIO) -> list[str]:
    log = logging.getLogger("fieldlab.test")
    log.debug("hidden below the level")
    log.info("outside a request")
    token = request_id.set("req-7")
    try:
        log.warning("inside [a] request: %d", 3)
    finally:
        request_id.reset(token)
    return [line for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    outside, inside = (json.loads(line) for line in log_lines(stream))
    assert outside["msg"] == "outside a request"
    assert "request_id" not in outside
    assert inside["request_id"] == "req-7"
    assert inside["level"] == "warning"
    assert inside["msg"] == "inside [a] request: 3"
    assert inside["logger"] == "fieldlab.test"


def test_aligned_text_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: one record, one line
    stream = Terminal()
    configure_logging("INFO", stream=stream)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in log_lines(stream)]
    assert len(lines) == 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])
    outside, inside = lines
    assert "INFO" in outside
    assert "fieldlab.test: outside a request" in outside
    assert "request_id" not in outside
    assert "WARNING" in inside
    assert "inside [a] request: 3" in inside  # brackets are text, not rich markup
    assert "request_id=req-7" in inside
    # Level names are padded to one width, so messages start in one column.
    assert outside.index("fieldlab.test") == inside.index("fieldlab.test")


def test_level_comes_from_settings() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    assert json.loads(log_lines(stream)[0])["msg"] == "hidden below the level"
