# jobkit: `make demo` shows it working, `make test` runs every check. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PLUGIN_PROJECTS := $(wildcard plugins/*/pyproject.toml)

.PHONY: install demo quickstart test lint typecheck docs pytest bench-pickup bench-pickup-postgres clean

$(STAMP): pyproject.toml $(PLUGIN_PROJECTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
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

clean:
	rm -rf $(VENV) build *.egg-info jobkit-demo site
