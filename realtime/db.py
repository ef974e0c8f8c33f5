"""Database reads for the server, kept off the eventlet hub.

SQLite calls and psycopg's waits block the whole hub under eventlet, so each read runs
in `eventlet.tpool` (a real OS thread). One read runs at a time: the engine's pool and
its locks (green after monkey patching) are then never contended from real threads.
Reads are rare (resume, a price snapshot for an unknown token, the HTTP API).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine

from indexer.db import make_engine

T = TypeVar("T")


class Database:
    def __init__(self, url: str, offload: bool = True) -> None:
        self.engine: Engine = make_engine(url, pool_size=1, max_overflow=0)
        self.offload = offload
        self._lock: Any = None
        if offload:
            from eventlet.semaphore import Semaphore

            self._lock = Semaphore(1)

    def read(self, query: Callable[..., T], *args: Any) -> T:
        """Run `query(connection, *args)` in a read-only transaction, off the hub."""
        if not self.offload:
            return self._run(query, *args)
        from eventlet import tpool

        with self._lock:
            return tpool.execute(self._run, query, *args)

    def _run(self, query: Callable[..., T], *args: Any) -> T:
        conn: Connection
        with self.engine.connect() as conn:
            return query(conn, *args)

    def dispose(self) -> None:
        self.engine.dispose()
