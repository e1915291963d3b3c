"""Searchable logs: JS errors from RUM beacons, synthetic console errors and failed requests,
and fieldlab's own warnings, as one table of log events with a full-text index (SQLite FTS5,
PostgreSQL tsvector + GIN), grouped by fingerprint.

Events are not written by the ingest path: an indexing job reads new ``js_error`` and finished
``check_run`` rows and turns them into events, so beacon ingest stays as cheap as it was; a
logging handler queues fieldlab's own WARNING+ records for a batched writer."""
