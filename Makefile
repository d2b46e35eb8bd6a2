# cutout: the two commands a new user needs are `make demo` and `make test`.
# Each makes (or refreshes) .venv from the pinned ranges in pyproject.toml, then runs.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	  if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then echo $$p; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# medallion, the TAXII 2.1 reference server, in a venv of its own for tests/integration/test_medallion_diff.py
PEER_VENV := .venv-medallion
PEER_STAMP := $(PEER_VENV)/.installed

.PHONY: demo test lint typecheck unit venv peer clean test-integration-pg

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "cutout needs Python 3.11 or newer on PATH" >&2; exit 1; fi
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

$(PEER_STAMP): Makefile | $(STAMP)
	@[ -x $(PEER_VENV)/bin/python ] || $(BIN)/python -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'medallion==3.0.0'
	@touch $(PEER_STAMP)

peer: $(PEER_STAMP)

demo: $(STAMP)
	$(BIN)/cutout demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test: $(STAMP) $(PEER_STAMP) lint typecheck
	$(BIN)/pytest -q

# the integration suite again with every broker on PostgreSQL (CUTOUT_TEST_POSTGRES; .ci/run does this too)
test-integration-pg: $(STAMP) $(PEER_STAMP)
	@if [ -z "$$CUTOUT_TEST_POSTGRES" ]; then echo "set CUTOUT_TEST_POSTGRES=postgresql://…" >&2; exit 1; fi
	CUTOUT_TEST_INTEGRATION_STORE=postgres $(BIN)/pytest -q tests/integration --deselect tests/integration/test_nodes.py

clean:
	rm -rf $(VENV) $(PEER_VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

# cutout beside medallion, one run, same client and objects (bench/run.py); bench-smoke: tiny sizes, checks the harness
.PHONY: bench bench-smoke bench-pg

# cutout on SQLite beside PostgreSQL, and two nodes on one PostgreSQL (bench/pg.py): BENCH_DB names a database
# the benchmark may empty, e.g. make bench-pg BENCH_DB=postgresql://postgres@127.0.0.1:5432/bench
bench-pg: $(STAMP)
	@if [ -z "$(BENCH_DB)" ]; then echo "make bench-pg needs BENCH_DB=postgresql://… (a database it may empty)" >&2; exit 1; fi
	$(BIN)/python -m bench.pg --db "$(BENCH_DB)"

bench: $(STAMP) $(PEER_STAMP)
	$(BIN)/python -m bench.run --out docs/benchmarks.md

bench-smoke: $(STAMP) $(PEER_STAMP)
	$(BIN)/python -m bench.run --smoke
