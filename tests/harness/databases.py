"""Throwaway databases: a SQLite file in the test's directory, or a PostgreSQL database
created for the test and dropped after.

PostgreSQL comes from CHAINPULSE_TEST_POSTGRES_URL, or the local server on
127.0.0.1:5432 when one answers; CI sets the variable, so there a missing server fails
instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from chainpulse.devnet import port_open

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str | None:
    url = os.environ.get("CHAINPULSE_TEST_POSTGRES_URL")
    if url:
        return url
    return DEFAULT_PG if port_open(5432) else None


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped on exit (skips the test
    when no server answers)."""
    admin_url = postgres_admin_url()
    if admin_url is None:
        pytest.skip("no PostgreSQL answers (set CHAINPULSE_TEST_POSTGRES_URL)")
    name = f"chainpulse_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """A fresh, empty database of `kind` ("sqlite" or "postgresql")."""
    if kind == "sqlite":
        yield f"sqlite:///{directory}/chainpulse.db"
        return
    with throwaway_postgres() as url:
        yield url
