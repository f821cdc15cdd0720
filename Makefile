# jobkit: `make demo` shows it working, `make test` runs every check. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PLUGIN_PROJECTS := $(wildcard plugins/*/pyproject.toml)

.PHONY: install demo quickstart test lint typecheck docs pytest bench-pickup bench-pickup-postgres bench-dashboard clean

$(STAMP): pyproject.toml $(PLUGIN_PROJECTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,dashboard]'
	for p in $(patsubst %/pyproject.toml,%,$(PLUGIN_PROJECTS)); do \
	  $(BIN)/python -m pip install --quiet -e "$$p[test]" || exit 1; done
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/jobkit demo --dir jobkit-demo

quickstart: install
	cd examples/quickstart && rm -rf jobkit.db* logs \
	  && ../../$(BIN)/python enqueue.py \
	  && ../../$(BIN)/jobkit worker --concurrency 2 --burst \
	  && ../../$(BIN)/jobkit list

lint: install
	$(BIN)/ruff check jobkit tests plugins examples bench

typecheck: install
	$(BIN)/mypy jobkit

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

pytest: install
	$(BIN)/pytest

test: lint typecheck docs pytest

bench-pickup: install
	$(BIN)/python bench/pickup.py

bench-pickup-postgres: install
	$(BIN)/python bench/pickup_postgres.py

bench-dashboard: install
	$(BIN)/python bench/dashboard.py

clean:
	rm -rf $(VENV) build *.egg-info jobkit-demo site

# The side-by-side benchmark (issue 6): jobkit against Huey (SQLite) and procrastinate
# (PostgreSQL), in its own virtualenv so the peers never become jobkit dependencies.
# `make bench` takes about 15 minutes on 2 cores and writes bench/RESULTS.md, results.json and
# results.png; `make bench-quick` is a 1-2 minute smoke run written to bench/quick/.
# BENCH_ARGS passes options through, e.g. `make bench BENCH_ARGS="--only sqlite --runs 5"`.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: bench bench-quick bench-install

$(BENCH_STAMP): bench/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt -e '.[postgres]'
	touch $(BENCH_STAMP)

bench-install: $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python bench/run.py $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python bench/run.py --quick $(BENCH_ARGS)
