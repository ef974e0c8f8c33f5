"""Database reads for the server, kept off the clients' way.

SQLite calls and psycopg's waits would hold up every client of the process, so each
read runs through the transport's `offload` (`Fanout.offload`: a real OS thread under
eventlet, one read at a time). Reads are rare (resume, a price snapshot for an unknown
token, the HTTP API).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine

from indexer import queries
from indexer.db import make_engine

T = TypeVar("T")

Offload = Callable[[Callable[[], Any]], Any]


def _inline(work: Callable[[], Any]) -> Any:
    return work()


class Database:
    def __init__(self, url: str, offload: Offload = _inline) -> None:
        self.engine: Engine = make_engine(url, pool_size=1, max_overflow=0)
        self.offload = offload
        self._primary: int | None = None

    def primary(self) -> int:
        """The database's primary chain (read until it is bound; 0 before: no rows)."""
        if self._primary is None:
            self._primary = self.read(queries.primary_chain)
        return self._primary or 0

    def read(self, query: Callable[..., T], *args: Any) -> T:
        """`query(connection, *args)` in a read-only transaction, through `offload`."""
        result: T = self.offload(lambda: self._run(query, *args))
        return result

    def _run(self, query: Callable[..., T], *args: Any) -> T:
        conn: Connection
        with self.engine.connect() as conn:
            return query(conn, *args)

    def dispose(self) -> None:
        self.engine.dispose()
