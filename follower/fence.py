"""Follower fencing: every token a follower acts with is recorded in the database, in the
transaction of what it does, and a token older than one recorded is refused. A follower
whose lease moved on while it was away (paused, partitioned) finds a newer token there
and stands down (`Deposed`), whatever Redis says.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection

from indexer.errors import ChainpulseError
from indexer.store import Store

FENCE_KEY = "follower_fence"  # chainpulse_meta: highest follower fencing token seen


class Deposed(ChainpulseError):
    """A follower acted with a fencing token older than one the database has seen."""


def claim_fence(store: Store, conn: Connection, token: int) -> None:
    """Record follower `token` as the newest, inside a write transaction; raises Deposed
    when a newer token acted already (the lock moved on while this follower was away)."""
    current = store.get_meta(FENCE_KEY, conn)
    if current is not None and int(current) > token:
        raise Deposed(f"follower token {token} is older than token {current}; standing down")
    if current != str(token):
        store.set_meta(conn, FENCE_KEY, str(token))


def fencing(store: Store, token: int) -> Callable[[Connection], None]:
    """`claim_fence` for `token`, as `indexer.reorg.repair` takes it (its `claim`)."""
    return lambda conn: claim_fence(store, conn, token)


def fence_floor(store: Store) -> int:
    """The newest follower token the database has seen (0 if none)."""
    value = store.get_meta(FENCE_KEY)
    return int(value) if value is not None else 0
