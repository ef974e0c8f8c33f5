"""Engines for SQLite and PostgreSQL, configured for many concurrent writers.

SQLite: WAL journal, a busy timeout, and `BEGIN IMMEDIATE` for write transactions
(so two writers queue on the lock instead of failing on upgrade). PostgreSQL:
psycopg 3 with a small pool and pre-ping.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from indexer.errors import ConfigError
from indexer.urls import mask_url

SQLITE_BUSY_TIMEOUT_S = 30


def normalise_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` and use the psycopg 3 driver for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, pool_size: int = 5, max_overflow: int | None = None) -> Engine:
    """An engine for `url`; PostgreSQL keeps `pool_size` connections (+ `max_overflow`,
    by default as many again)."""
    url = normalise_url(url)
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a database URL: {mask_url(url)}") from None
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        )
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(
            f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL"
        )
    overflow = pool_size if max_overflow is None else max_overflow
    return sa.create_engine(url, pool_size=pool_size, max_overflow=overflow, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the begin hook below issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def failure_reason(exc: sa.exc.DBAPIError) -> str:
    """The first line of the driver's message: what went wrong, without SQL or traceback."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__


def write_options() -> dict[str, Any]:
    """Execution options for a connection that will write (takes SQLite's write lock first)."""
    return {"sqlite_immediate": True}
