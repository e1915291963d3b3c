"""Fingerprints and the search query language: pure functions."""

from __future__ import annotations

import logging

import pytest

from app.search.events import from_check_run, from_js_error, from_log_record
from app.search.fingerprint import fingerprint, normalise_message, top_frame
from app.search.query import QueryError, Term, fts5_match, parse_terms, tsquery

V8 = "TypeError: x\n    at addToCart (https://shop.example/static/app.3f9a2c1b.js:120:17)\n    at onclick (a.js:1:1)"


def _row(message: str, stack: str = V8, **over: object) -> dict[str, object]:
    return {"id": 1, "site_id": 1, "ts": 0, "message": message, "source": "https://shop.example/a.js", "line": 3,
            "stack": stack, "url": "https://shop.example/", "page_group": "/", "browser": "chrome", **over}  # fmt: skip


def test_messages_differing_in_numbers_quotes_urls_and_ids_normalise_alike() -> None:
    a = normalise_message(
        "Cannot read 'foo' of item 12 at https://api.example/cart/12?x=1 id 0x1f3a deadbeef42"
    )
    b = normalise_message(
        'Cannot read "bar" of item 7 at http://other.example/cart/99 id 0xff 0123456789abcdef'
    )
    assert a == b == "Cannot read <str> of item <n> at <url> id <hex> <hex>"
    assert normalise_message("ref 123e4567-e89b-12d3-a456-426614174000") == "ref <id>"
    # Words are kept: "decade" is hex letters only, no digit.
    assert normalise_message("decade   of\tfaces") == "decade of faces"


def test_same_error_with_different_numbers_and_urls_is_one_group() -> None:
    one = from_js_error(_row("Cannot read 'a' of 12 at https://x.example/1"))
    two = from_js_error(_row("Cannot read 'b' of 13 at https://y.example/2",
                             stack=V8.replace("3f9a2c1b", "77aa01cd").replace(":120:17", ":121:2")))  # fmt: skip
    assert one["fingerprint"] == two["fingerprint"]
    assert one["top_frame"] == "addToCart@/static/app.<hex>.js"


def test_different_top_frame_is_another_group() -> None:
    one = from_js_error(_row("boom"))
    two = from_js_error(_row("boom", stack=V8.replace("addToCart", "checkout")))
    assert one["fingerprint"] != two["fingerprint"]
    # And a different kind of event with the same text is never the same group.
    assert fingerprint("js-error", "boom", "f@a.js") != fingerprint("console-error", "boom", "f@a.js")


@pytest.mark.parametrize(
    ("stack", "source", "line", "frame"),
    [
        ("Error: e\n    at https://s.example/app.js:10:5", "", 0, "/app.js:10"),
        ("Error: e\n    at Object.<anonymous> (https://s.example/a.js?v=3:2:1)", "", 0, "Object.<anonymous>@/a.js"),
        ("handler@https://s.example/lib/v2/x.js:40:9\n@https://s.example/y.js:1:1", "", 0, "handler@/lib/v<n>/x.js"),
        ("@https://s.example/y.js:7:1", "", 0, "/y.js:7"),
        ("", "https://s.example/inline.js#frag", 4, "/inline.js:4"),
        ("", "", 0, ""),
    ],
)  # fmt: skip
def test_top_frame_of_chrome_firefox_and_frameless_errors(
    stack: str, source: str, line: int, frame: str
) -> None:
    assert top_frame(stack, source=source, line=line) == frame


def test_run_events_carry_check_step_and_level() -> None:
    run = {"id": 5, "started_ms": 1000, "finished_ms": 2000, "result": {"steps": [
        {"name": "cart", "console_errors": [{"type": "console", "text": "bad 1", "url": "http://s/a.js"}],
         "failed_requests": [{"url": "http://s/x", "status": 404}, {"url": "http://s/y", "error": "net::ERR_FAILED"}]},
        "not a step"]}}  # fmt: skip
    events = from_check_run(run, "shop flow", 3)
    assert [(e["kind"], e["level"], e["seq"]) for e in events] == [
        ("console-error", "error", 0),
        ("failed-request", "warning", 1),
        ("failed-request", "error", 2),
    ]
    assert events[2]["message"] == "net::ERR_FAILED http://s/y"
    assert all(e["ts"] == 2000 and e["site_id"] == 3 and e["source_id"] == 5 for e in events)


def test_log_records_keep_level_logger_and_exception() -> None:
    try:
        raise RuntimeError("inner")
    except RuntimeError as exc:
        record = logging.LogRecord(
            "fieldlab.x", logging.ERROR, "f.py", 1, "failed %s", ("job",), (type(exc), exc, exc.__traceback__)
        )
    event = from_log_record(record, "req-7f3a")
    assert (event["kind"], event["level"], event["message"]) == ("fieldlab", "error", "failed job")
    assert "RuntimeError: inner" in event["detail"]
    assert "request_id=req-7f3a" in event["detail"]
    assert event["site_id"] is None


def test_query_terms_phrases_and_prefixes_on_both_backends() -> None:
    terms = parse_terms('Cannot "read Properties" checkout.js net* ;;')
    assert terms == [Term(("cannot",)), Term(("read", "properties")), Term(("checkout", "js")),
                     Term(("net",), prefix=True)]  # fmt: skip
    assert fts5_match(terms) == '"cannot" AND "read properties" AND "checkout js" AND "net"*'
    assert tsquery(terms) == "(cannot) & (read <-> properties) & (checkout <-> js) & (net:*)"
    # Operators and quotes of either syntax never reach the database.
    assert parse_terms("a:* | !b & c) NEAR(x") == [Term(("a",), prefix=True), Term(("b",)), Term(("c",)),
                                                   Term(("near", "x"))]  # fmt: skip
    assert parse_terms("") == []
    with pytest.raises(QueryError) as raised:
        parse_terms(" ".join(["w"] * 17))
    assert raised.value.field == "q"
