# chainpulse: one command to run the stack, one to run the tests.
#   make dev    the whole stack on this laptop (anvil, Redis, worker, follower, server)
#   make test   lint, type-check and the whole test suite
# Both install what they need: the virtualenv at .venv, the npm tools, a redis-server
# (and for the tests, chromium) from the Debian packages where missing.

# The lock (requirements.lock) is resolved for every Python from 3.11 up; 3.11 is the
# one CI runs, so it is preferred where several are installed.
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

UV_VERSION := 0.13.9

.PHONY: dev test test-all lint typecheck unit deps redis-server chromium clean bench lock contracts assets \
	conformance conformance-env

deps: $(VENV)/.installed node_modules/.installed assets redis-server

# Exact versions with hashes from the lock (pip itself included), then chainpulse
# without its dependencies: pip's hash mode cannot hash an editable install.
$(VENV)/.installed: pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "chainpulse needs Python 3.11 or newer on PATH" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Resolve the lock again after a change to pyproject.toml's dependencies; with
# UPGRADE=1, move every dependency to its newest allowed version.
lock: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	printf 'pip==26.3\nsetuptools>=68\n' | $(BIN)/uv pip compile pyproject.toml - --extra dev \
		--universal --python-version 3.11 --generate-hashes --quiet $(if $(UPGRADE),--upgrade) \
		-o requirements.lock

node_modules/.installed: package.json package-lock.json
	npm ci --no-fund --no-audit --loglevel=error
	touch $@

# The demo page's socket.io-client comes from the npm registry: copied from node_modules
# into package data (git-ignored), so that the page works from a wheel as well.
CLIENT_JS := realtime/web/vendor/socket.io.min.js
assets: $(CLIENT_JS)
$(CLIENT_JS): node_modules/.installed
	mkdir -p $(dir $@)
	cp node_modules/socket.io-client/dist/socket.io.min.js $@

# A redis-server binary is what the tests and `chainpulse dev` start; install one where none is.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server from the Debian packages"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

# The demo page's browser test drives Debian's chromium (Playwright downloads no browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "installing chromium from the Debian packages"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(VENV)/.installed
	$(BIN)/ruff check chainpulse follower indexer realtime workers migrations tests bench
	$(BIN)/ruff format --check chainpulse follower indexer realtime workers migrations tests bench

typecheck: $(VENV)/.installed
	$(BIN)/mypy

# Everything the tests and the processes they start write to a temporary directory
# (Celery's pool, redis-server, pytest's own) goes under .test-tmp, removed afterwards.
TEST_TMP := $(CURDIR)/.test-tmp
# Four pytest processes (pytest-xdist), a test file each at a time: most tests wait on
# the processes they start (nodes, workers, servers, browsers), so four keep this
# 2-core machine busy (884 tests: 587 s with four, 620-680 s with three on 2026-12-08;
# 869 tests: 460 s with three, 573 s with two on a faster day, 2026-12-07).
# PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= 4

# Autobahn|Testsuite is Python 2 code: it gets a Python 2.7 virtualenv of its own, built
# from pinned, hashed requirements (tests/conformance/autobahn/). Where no Python 2.7
# exists, its tests skip and say so.
PY27 := $(shell tests/conformance/find-python27.sh)
AUTOBAHN_ENV := .conformance/py27

conformance-env:
	@if [ -n "$(PY27)" ]; then \
		tests/conformance/autobahn/build-env.sh "$(PY27)" $(AUTOBAHN_ENV); \
	else \
		echo "conformance: no Python 2.7 found; the Autobahn|Testsuite tests will be skipped"; \
	fi

# The WebSocket conformance report: Autobahn|Testsuite's cases 1-10 on chainpulse's
# WebSocket code beside the websockets library's, and the permessage-deflate cases 12-13
# (about 10 minutes more).
conformance: deps conformance-env
	$(BIN)/python -m tests.conformance.report --compression

test: deps chromium conformance-env lint typecheck
	rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP)
	TMPDIR=$(TEST_TMP) $(BIN)/python -m pytest --basetemp=$(TEST_TMP)/pytest \
		-n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS); \
		status=$$?; rm -rf $(TEST_TMP); exit $$status

# Everything, the long variants (`slow`) included.
test-all:
	$(MAKE) test PYTEST_ARGS="$(PYTEST_ARGS) -m 'slow or not slow'"

# The tests of pure logic, which need no service: seconds.
unit: $(VENV)/.installed
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

dev: deps
	$(BIN)/chainpulse dev

# Compile the test contracts (chainpulse/contracts/*.sol) with the pinned solc-js into
# the committed artifacts.json; a test checks that the two agree.
contracts: node_modules/.installed
	node chainpulse/contracts/build.js

bench: deps
	$(BIN)/python -m bench.backfill.run

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .conformance
