# chainpulse: one command to run the stack, one to run the tests.
#   make dev    the whole stack on this laptop (anvil, Redis, worker, follower, server)
#   make test   lint, type-check and the whole test suite
# Both install what they need: the virtualenv at .venv, the npm tools, a redis-server.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: dev test lint typecheck unit deps redis-server clean bench

deps: $(VENV)/.installed node_modules/.installed redis-server

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "chainpulse needs Python 3.11 or newer on PATH" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-fund --no-audit --loglevel=error
	touch $@

# A redis-server binary is what the tests and `chainpulse dev` start; install one where none is.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server from the Debian packages"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

lint: $(VENV)/.installed
	$(BIN)/ruff check chainpulse follower indexer realtime workers migrations tests bench
	$(BIN)/ruff format --check chainpulse follower indexer realtime workers migrations tests bench

typecheck: $(VENV)/.installed
	$(BIN)/mypy

test: deps lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

dev: deps
	$(BIN)/chainpulse dev

bench: deps
	$(BIN)/python bench/backfill.py

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
