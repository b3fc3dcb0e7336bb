# APIStream Analytics. `make demo` and `make test` set up everything they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup demo test test-fast test-spark lint clean screenshots

help:
	@echo "make demo       generate ~1M events, stream them, print a summary"
	@echo "make test       all tests (fast ones first, then Spark end-to-end)"
	@echo "make test-fast  tests that need no JVM (seconds)"
	@echo "make lint       ruff"
	@echo "make screenshots  README images of the report and dashboard (after make demo)"
	@echo "make clean      remove the virtualenv and outputs"

$(STAMP): pyproject.toml
	@scripts/check_python.sh "$(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	@scripts/check_java.sh
	$(BIN)/apistream demo

test: setup
	@scripts/check_java.sh
	@scripts/check_chromium.sh
	$(BIN)/pytest -m "not spark" -q
	$(BIN)/pytest -m spark -q

test-fast: setup
	$(BIN)/pytest -m "not spark" -q

screenshots: setup
	@scripts/check_chromium.sh
	$(BIN)/python scripts/screenshots.py --output output/demo --images docs/images

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) output .pytest_cache .ruff_cache
