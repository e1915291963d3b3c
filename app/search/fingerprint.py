"""Fingerprints: which log events are "the same error". A pure module.

The fingerprint is a hash of the kind, the normalised message and the top frame. Normalising
collapses what varies between occurrences of one bug (URLs, quoted values, numbers, hex ids), so
"Cannot read 'a' of item 12" and "Cannot read 'b' of item 13" group; the top frame keeps apart
equal messages thrown by different code."""

from __future__ import annotations

import hashlib
import re

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"`<>()]+", re.IGNORECASE)
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)
_HEX = re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SPACE = re.compile(r"\s+")
# Chrome: "    at fn (https://x/a.js:1:2)" or "    at https://x/a.js:1:2";
# Firefox and Safari: "fn@https://x/a.js:1:2".
_V8_FRAME = re.compile(r"^\s*at\s+(?:(?P<fn>.+?)\s+\()?(?P<loc>[^()\s]+?)(?::(?P<line>\d+))?(?::\d+)?\)?\s*$")
_GECKO_FRAME = re.compile(r"^\s*(?P<fn>[^@\s]*)@(?P<loc>.+?)(?::(?P<line>\d+))?(?::\d+)?\s*$")
MESSAGE_MAX = 300


def normalise_message(message: str) -> str:
    text = _URL.sub("<url>", message)
    text = _QUOTED.sub("<str>", text)
    text = _UUID.sub("<id>", text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACE.sub(" ", text).strip()[:MESSAGE_MAX]


def normalise_location(location: str) -> str:
    """A script URL without query, fragment or origin, with build hashes and versions collapsed
    (``/static/app.3f9a2c1b.js`` and ``/static/app.77aa01cd.js`` are one file across deploys)."""
    path = location.split("?", 1)[0].split("#", 1)[0]
    path = re.sub(r"^[a-z][a-z0-9+.-]*://[^/]*", "", path, flags=re.IGNORECASE)
    path = _UUID.sub("<id>", path)
    path = _HEX.sub("<hex>", path)
    return _NUMBER.sub("<n>", path)


def top_frame(stack: str, *, source: str = "", line: int = 0) -> str:
    """``function@file`` of the first stack frame; ``file:line`` for an anonymous frame (the
    line then tells two anonymous functions of one file apart). Without a stack: the source."""
    for raw in stack.splitlines():
        found = _V8_FRAME.match(raw) or _GECKO_FRAME.match(raw)
        if found is None or not found.group("loc"):
            continue
        fn = (found.group("fn") or "").strip()
        file = normalise_location(found.group("loc"))
        if fn and fn not in ("<anonymous>", "eval"):
            return f"{fn}@{file}"
        return f"{file}:{found.group('line') or 0}"
    if source:
        return f"{normalise_location(source)}:{line}"
    return ""


def fingerprint(kind: str, message: str, frame: str) -> str:
    """32 hex digits: stable across processes and releases of fieldlab (no ``hash()``)."""
    key = "\x1f".join((kind, normalise_message(message), frame))
    return hashlib.sha256(key.encode()).hexdigest()[:32]
