# `make run`: the app on its embedded default (SQLite, in-process events, demo data).
# `make test`: every test, against real PostgreSQL, Redis, a Kafka-protocol broker and Chromium.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8080
BIN := $(VENV)/bin

.PHONY: run test venv venv-dev browser prometheus pdftools assets up bench wrk soak clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/activate
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

# Debian's Chromium for the browser tests (Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || { echo "Could not install chromium (need root and Debian's package index)"; exit 1; }; }
	@# Japanese glyphs for the screenshots (without a CJK font every label renders as boxes).
	@fc-list :lang=ja 2>/dev/null | grep -q . || { \
	  echo "Installing Debian's fonts-ipafont-gothic for Japanese in the browser screenshots"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-ipafont-gothic >/dev/null) \
	  || echo "Could not install fonts-ipafont-gothic: screenshots will show boxes for Japanese"; }

# Debian's Prometheus and promtool for tests/test_metrics.py (a real scrape, the alert rules' checks).
prometheus:
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { \
	  echo "Installing Debian's prometheus for the metrics tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
	  || { echo "Could not install prometheus (need root and Debian's package index)"; exit 1; }; }

# Debian's pdftotext (poppler-utils, with poppler-data for the Japanese CID font): the
# report tests read the PDFs' text back with it.
pdftools:
	@command -v pdftotext >/dev/null 2>&1 || { \
	  echo "Installing Debian's poppler-utils for the PDF report tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils poppler-data >/dev/null) \
	  || { echo "Could not install poppler-utils (need root and Debian's package index)"; exit 1; }; }

# Front-end libraries (charts, calendar, autocomplete) from npm at the versions of
# package-lock.json, copied to app/static/vendor/ (not committed, never loaded from a CDN).
ASSETS := app/static/vendor/.built
$(ASSETS): package.json package-lock.json scripts/vendor_assets.sh
	@command -v npm >/dev/null 2>&1 || { echo "npm is needed for the screens' libraries (Debian: apt-get install npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	scripts/vendor_assets.sh
	touch $@
assets: $(ASSETS)

run: venv assets
	@PORT=$(PORT) BIN=$(BIN) scripts/run.sh

# The full stack: gunicorn, RQ worker (relay, sweep, reminders), Kafka consumer, tansu;
# PostgreSQL and Redis from DATABASE_URL / REDIS_URL (defaults: local servers, database crm).
up: venv assets
	@PORT=$(PORT) BIN=$(BIN) scripts/up.sh

test: venv-dev browser prometheus pdftools assets
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# `make bench`: load BENCH_CUSTOMERS customers (+10x tasks, 2x meetings, 1x requests) into
# crm_bench_<n> with COPY, then run gunicorn + wrk (cached, uncached, hello, bare SQL).
# BENCH_LOAD=0 reuses an already loaded database. Results: bench/results/*.json.
BENCH_CUSTOMERS ?= 100000
BENCH_DURATION ?= 10
BENCH_LOAD ?= 1
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "Installing Debian's wrk for the benchmark"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) \
	  || { echo "Could not install wrk (need root and Debian's package index)"; exit 1; }; }

bench: venv wrk
	$(BIN)/python -m bench.run --customers $(BENCH_CUSTOMERS) --duration $(BENCH_DURATION) $(if $(filter 1,$(BENCH_LOAD)),--load,) $(BENCH_ARGS)

# `make soak`: the full stack (gunicorn, RQ worker, consumer, tansu) on PostgreSQL (database crm_soak, recreated)
# and a private Redis under steady mixed traffic at half its measured capacity for SOAK_MINUTES; samples every
# process each minute and checks the effects at the end (bench/soak.py). Results: bench/results/soak-*.json.
SOAK_MINUTES ?= 20
soak: venv
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) instance/crm.db .pytest_cache node_modules app/static/vendor
