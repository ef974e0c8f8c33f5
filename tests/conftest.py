"""Shared fixtures: real services, each started fresh for the tests.

- `redis_server`: a throwaway redis-server on a free port for the session;
  `redis_url` flushes it before each test.
- `anvil`: a fresh anvil node per test.
- `database_url`: parametrised over SQLite (a temp file) and PostgreSQL (a database
  created for the test and dropped after). PostgreSQL comes from
  CHAINPULSE_TEST_POSTGRES_URL, or the local server at 127.0.0.1:5432 when one answers;
  CI sets the variable, so there a missing server fails instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa

from chainpulse.devnet import Anvil, RedisServer, port_open

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # a test may have stopped it
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


def _postgres_admin_url() -> str | None:
    url = os.environ.get("CHAINPULSE_TEST_POSTGRES_URL")
    if url:
        return url
    return DEFAULT_PG if port_open(5432) else None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    admin_url = _postgres_admin_url()
    if admin_url is None:
        pytest.skip("no PostgreSQL answers (set CHAINPULSE_TEST_POSTGRES_URL)")
    name = f"chainpulse_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/chainpulse.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))
