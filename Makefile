# Quickstart: `make demo` serves the embedded demo; `make test` runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/balance-gateway: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/balance-gateway

demo: install
	$(BIN)/balance-gateway serve

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info
