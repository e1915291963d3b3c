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

.PHONY: install run test test-fast lint bench snippet clean help

help:
	@echo "make run     install what is missing, start fieldlab on http://$(HOST):$(PORT) (SQLite, demo site)"
	@echo "make test    install what is missing, lint, run the whole suite (SQLite + PostgreSQL, Chromium)"
	@echo "make lint    ruff + mypy (strict)"
	@echo "make bench   benchmarks: beacon ingest vs a no-op endpoint, snippet size"
	@echo "make install venv + Python packages, Debian chromium, pinned npm tools, snippet build"

install: $(VENV)/.installed node_modules/.installed $(CHROMIUM) static/fieldlab.js

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

# The build is committed (fieldlab serves it without Node); `make snippet` rebuilds it after a
# change under rum-snippet/, and a test fails when the committed build does not match the source.
static/fieldlab.js: | node_modules/.installed
	node rum-snippet/build.mjs

snippet: node_modules/.installed
	node rum-snippet/build.mjs

run: install
	FIELDLAB_HOST=$(HOST) FIELDLAB_PORT=$(PORT) $(VENV)/bin/fieldlab demo seed
	@echo "admin token (development only): $(FIELDLAB_ADMIN_TOKEN)"
	FIELDLAB_DEMO=1 $(VENV)/bin/fieldlab serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check app probes tests bench
	$(VENV)/bin/ruff format --check app probes tests bench
	$(VENV)/bin/mypy

test: install lint
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	@command -v wrk >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; }
	$(PY) bench/beacon_bench.py
	$(PY) bench/snippet_size.py

clean:
	rm -rf $(VENV) node_modules fieldlab.db fieldlab.db-wal fieldlab.db-shm tests/artifacts
