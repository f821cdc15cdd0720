# jobkit: `make demo` shows it working, `make test` runs every check. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PLUGIN_PROJECTS := $(wildcard plugins/*/pyproject.toml)

.PHONY: install demo quickstart test lint typecheck docs pytest bench-pickup bench-pickup-postgres bench-dashboard bench-retention clean

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

bench-retention: install
	$(BIN)/python bench/retention_drain.py

clean:
	rm -rf $(VENV) build *.egg-info jobkit-demo site

# The side-by-side benchmark (issue 6): jobkit against Huey (SQLite) and procrastinate
# (PostgreSQL), in virtualenvs of its own so the peers never become jobkit dependencies.
# jobkit's side runs in two (issue 17): .venv-bench, jobkit alone (the bare install), and
# .venv-bench-default, the same requirements plus every first-party plugin (plugins/*), as
# `make install` installs them (the bench configures one notifier there).
# `make bench` takes about 20 minutes on 2 cores and writes bench/RESULTS.md, results.json and
# results.png; `make bench-quick` is a 1-3 minute smoke run written to bench/quick/.
# BENCH_ARGS passes options through, e.g. `make bench BENCH_ARGS="--only sqlite --runs 5"`.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_DEFAULT_VENV  := .venv-bench-default
BENCH_DEFAULT_STAMP := $(BENCH_DEFAULT_VENV)/.installed
BENCH_RUN := $(BENCH_VENV)/bin/python bench/run.py --default-python $(BENCH_DEFAULT_VENV)/bin/python

.PHONY: bench bench-quick bench-install

$(BENCH_STAMP): bench/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt -e '.[postgres]'
	touch $(BENCH_STAMP)

$(BENCH_DEFAULT_STAMP): bench/requirements.txt pyproject.toml $(PLUGIN_PROJECTS)
	$(PYTHON) -m venv $(BENCH_DEFAULT_VENV)
	$(BENCH_DEFAULT_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BENCH_DEFAULT_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt \
	  -e '.[postgres,dashboard]' $(foreach p,$(patsubst %/pyproject.toml,%,$(PLUGIN_PROJECTS)),-e $(p))
	touch $(BENCH_DEFAULT_STAMP)

bench-install: $(BENCH_STAMP) $(BENCH_DEFAULT_STAMP)

bench: bench-install
	$(BENCH_RUN) $(BENCH_ARGS)

bench-quick: bench-install
	$(BENCH_RUN) --quick $(BENCH_ARGS)
