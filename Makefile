# fieldlab — every target installs what it needs first, so a fresh clone needs only `make run`
# or `make test`. Stamps make re-runs cheap; they are redone when their inputs change.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHROMIUM := /usr/bin/chromium
HOST ?= 127.0.0.1
PORT ?= 8000
# A development admin token for `make run` only; production sets its own.
FIELDLAB_ADMIN_TOKEN ?= dev-admin-token
export FIELDLAB_ADMIN_TOKEN

# Beacons for the field analytics benchmark: 1M takes a few minutes; FIELD_ROWS=10000000 is the
# issue's full size (20-45 minutes on 2 cores).
FIELD_ROWS ?= 1000000

.PHONY: install run test test-fast lint bench snippet ui clean help

help:
	@echo "make run     install what is missing, start fieldlab on http://$(HOST):$(PORT) (SQLite, demo site and checks)"
	@echo "make test    install what is missing, lint, run the whole suite (SQLite + PostgreSQL, Chromium)"
	@echo "make lint    ruff + mypy (strict)"
	@echo "make bench   benchmarks: beacon ingest vs a no-op endpoint, snippet size, field rollups, synthetic checks"
	@echo "make install venv + Python packages, Debian chromium, pinned npm tools, snippet build"

install: $(VENV)/.installed node_modules/.installed $(CHROMIUM) $(VENV)/bin/promtool static/fieldlab.js static/ui/manifest.json

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# lighthouse and @lhci/cli are pinned exactly in package.json (newer ones need Node 22).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(CHROMIUM):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

# promtool (a test checks /metrics with it) from Debian's prometheus package, unpacked rather
# than installed: installing the package would also start a Prometheus server on :9090.
$(VENV)/bin/promtool: | $(VENV)/.installed
	if command -v promtool >/dev/null; then ln -sf "$$(command -v promtool)" $@; else \
	  tmp=$$(mktemp -d) && (cd $$tmp && apt-get update && apt-get download prometheus \
	    && dpkg-deb -x prometheus_*.deb root) && install -m 755 $$tmp/root/usr/bin/promtool $@ \
	    && rm -rf $$tmp; fi

# The build is committed (fieldlab serves it without Node); `make snippet` rebuilds it after a
# change under rum-snippet/, and a test fails when the committed build does not match the source.
static/fieldlab.js: | node_modules/.installed
	node rum-snippet/build.mjs

snippet: node_modules/.installed
	node rum-snippet/build.mjs
	node app/ui/assets/build.mjs

# Dashboard CSS/JS (uPlot vendored in): fingerprinted, precompressed, committed like the snippet.
static/ui/manifest.json: | node_modules/.installed
	node app/ui/assets/build.mjs

ui: node_modules/.installed
	node app/ui/assets/build.mjs

# The demo checks visit this server on loopback and run the example flow: both are allowed for
# `make run` only (a real deployment keeps private targets refused).
DEMO_ENV := FIELDLAB_ALLOW_PRIVATE_TARGETS=1 FIELDLAB_FLOWS_DIR=probes/examples

run: install
	FIELDLAB_HOST=$(HOST) FIELDLAB_PORT=$(PORT) $(DEMO_ENV) $(VENV)/bin/fieldlab demo seed
	@echo "admin token (development only): $(FIELDLAB_ADMIN_TOKEN)"
	FIELDLAB_DEMO=1 $(DEMO_ENV) $(VENV)/bin/fieldlab serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check app probes tests bench
	$(VENV)/bin/ruff format --check app probes tests bench
	$(VENV)/bin/mypy

# Tests run in two passes: most of the suite spread over TEST_WORKERS processes (pytest-xdist;
# each has its own PostgreSQL database and temp dirs, and the tests wait on subprocesses and
# sockets more than they compute), then the tests marked `serial` one at a time, with the
# machine to themselves: they count Chromium processes, or run Lighthouse, whose numbers other
# load would move. Both passes run even if the first fails; make fails if either did.
# $(call two_passes,WHICH,MARKERS AND ) - WHICH names the tests, the prefix narrows both passes.
TEST_WORKERS ?= 2
define two_passes
	@rc=0; echo "== $(1) not marked serial, $(TEST_WORKERS) processes"; \
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "$(2)not serial" || rc=$$?; \
	echo "== $(1) marked serial, one at a time"; \
	$(PY) -m pytest -q -m "$(2)serial" || rc=$$?; exit $$rc
endef

test: install lint
	$(call two_passes,tests,)

test-fast: install
	$(call two_passes,fast tests,not slow and )

bench: install
	@command -v wrk >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; }
	$(PY) bench/beacon_bench.py
	$(PY) bench/snippet_size.py
	$(PY) bench/field_bench.py --rows $(FIELD_ROWS)
	$(PY) bench/probe_bench.py

clean:
	rm -rf $(VENV) node_modules fieldlab.db fieldlab.db-wal fieldlab.db-shm tests/artifacts
