"""Shared fixtures: real services, each started fresh for the tests (see tests/harness).

- `redis_server`: a throwaway redis-server on a free port for the session;
  `redis_url` starts it again if a test stopped it and empties it before each test.
- `anvil`: a fresh anvil node per test.
- `database_url`: parametrised over SQLite (a file in the test's directory) and
  PostgreSQL (a database created for the test and dropped after).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainpulse.devnet import Anvil, RedisServer
from tests.harness.databases import throwaway_postgres
from tests.harness.stack import fresh_redis


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytests_own_directory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """The processes tests start put their temporary files under pytest's base
    directory, not in /tmp (a Celery pool process killed with -9 leaves its `pymp-*`
    directory behind), however pytest was started. `make test` points TMPDIR at
    .test-tmp, removed at the end, and is left alone."""
    if os.environ.get("TMPDIR"):
        yield
        return
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tmp"))
    try:
        yield
    finally:
        del os.environ["TMPDIR"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return fresh_redis(redis_server)


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/chainpulse.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect cycles when each test ends: a socket or file a test left open in a
    reference cycle (a websocket-client WebSocket is one) then warns in that test's
    teardown, instead of in whichever later test the collector happens to run."""
    yield
    import gc

    gc.collect()
