# recbench: two commands on a fresh machine.
#   make run    the main job (the MoRec-vs-IDRec comparison, then LEADERBOARD.md)
#   make test   installs what it needs, then runs the unit tests
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
RECIPE ?= recipes/morec_vs_idrec.yaml
# one-thread runs side by side, one per core (benchmarks/ray_vs_serial.py: 1.86x the serial wall, same numbers)
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
RUN_FLAGS ?= --executor ray --workers $(WORKERS)
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow lint regress bench clean

install: $(STAMP)

# torch==2.13.0 first: with no torch installed, a bare `torch` requirement pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/recbench run $(RECIPE) $(RUN_FLAGS)
	$(VENV)/bin/recbench leaderboard

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

regress: install
	$(PY) -m pytest -q -s -m regression tests/test_regression.py

lint: install
	$(VENV)/bin/ruff check recbench tests benchmarks
	$(VENV)/bin/ruff format --check recbench tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
