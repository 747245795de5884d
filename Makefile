# Two entry points: `make demo` (the service on simulated providers) and
# `make test` (lint, types, the whole suite). Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test check docs bench bench-quick soak clean

# The demo needs the project alone (its base dependencies); the tests, docs and
# benchmarks need the dev extra on top, which also satisfies the demo.
$(BIN)/.installed-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(BIN)/.installed-base

demo: $(BIN)/.installed-base
	$(BIN)/router-health demo

check: $(BIN)/.installed-base
	$(BIN)/router-health check

# The suite runs with DEBUG logs captured, then every output is grepped for
# the test keys and tokens: a secret that reached any log line fails the run.
test: $(BIN)/.installed
	$(BIN)/ruff check service adapters tests benchmarks
	$(BIN)/mypy
	set -o pipefail; $(BIN)/python -m pytest --log-file=.test-debug.log --log-file-level=DEBUG 2>&1 | tee .test-output.log
	@if grep -nE 'rhtestkey|rhtesttoken' .test-debug.log .test-output.log; then \
		echo "a test key leaked into the test run's output or logs" >&2; exit 1; fi

# The reference (docs/) as a static site in site/; --strict fails on any
# broken link or page left out of the navigation.
docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m benchmarks

bench-quick: $(BIN)/.installed
	$(BIN)/python -m benchmarks --quick
	$(BIN)/python -m benchmarks.storage --quick

soak: $(BIN)/.installed
	$(BIN)/python -m benchmarks.soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
