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

# The demo on http://$(HOST):$(PORT)/graphql. Where npm exists, GraphiQL's pinned assets are
# installed first (as `make test` does) so the page loads nothing from a CDN; the server's
# banner says where the page gets them, the key, and one curl line.
HOST ?= 127.0.0.1
PORT ?= 8000
demo: install
	@if [ ! -d gateway/server/static/graphiql ] && command -v npm >/dev/null 2>&1; then \
	  scripts/fetch_graphiql_assets.sh || echo "make demo: could not fetch GraphiQL's assets from the npm registry; the page will use the CDN"; \
	fi
	$(BIN)/balance-gateway serve --host $(HOST) --port $(PORT)

# Where npm exists, set up what the Node-based tests need (CI installs it all; elsewhere
# those tests skip, saying what is missing).
test: install
	@if command -v npm >/dev/null 2>&1; then \
	  for dir in audit federation live-client; do \
	    [ -d $$dir/node_modules ] || npm ci --prefix $$dir --no-audit --no-fund --silent || exit 1; \
	  done; \
	  [ -d gateway/server/static/graphiql ] || scripts/fetch_graphiql_assets.sh || exit 1; \
	fi
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info
