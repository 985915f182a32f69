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

# Where npm exists, set up what the Node-based tests need (CI installs it all; elsewhere
# those tests skip, saying what is missing).
test: install
	@if command -v npm >/dev/null 2>&1; then \
	  for dir in audit federation; do \
	    [ -d $$dir/node_modules ] || npm ci --prefix $$dir --no-audit --no-fund --silent || exit 1; \
	  done; \
	  [ -d gateway/server/static/graphiql ] || scripts/fetch_graphiql_assets.sh || exit 1; \
	fi
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info
