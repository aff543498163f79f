# Every target bootstraps .venv itself, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config.toml
CORPUS ?=

.PHONY: demo run test lint typecheck pytest bench bench-deliver bench-latency bench-storage \
	bench-scale constraints \
	check status clean

# constraints.txt pins every dependency to the versions the tests passed with; `make
# constraints` refreshes it from a fresh environment (then run `make test`).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/feedhook demo

run: $(STAMP)
	$(BIN)/feedhook run $(if $(wildcard $(CONFIG)),--config $(CONFIG))

check: $(STAMP)
	@test -n "$(URL)" || { echo "usage: make check URL=https://example.com/feed.xml"; exit 2; }
	$(BIN)/feedhook check $(if $(wildcard $(CONFIG)),--config $(CONFIG)) "$(URL)"

status: $(STAMP)
	$(BIN)/feedhook status $(if $(wildcard $(CONFIG)),--config $(CONFIG))

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	@touch $@

constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install --quiet --upgrade pip
	.venv-constraints/bin/python -m pip install --quiet -e ".[dev,bench]"
	{ echo "# The versions the tests passed with; refresh with make constraints, then make test."; \
	  .venv-constraints/bin/python -m pip freeze --exclude-editable | grep -v '^feedhook'; } > constraints.txt
	rm -rf .venv-constraints

bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench.poll $(if $(CORPUS),--corpus $(CORPUS))

bench-deliver: $(STAMP)
	$(BIN)/python -m bench.deliver

bench-latency: $(STAMP)
	$(BIN)/python -m bench.latency

bench-storage: $(STAMP)
	$(BIN)/python -m bench.storage

bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
