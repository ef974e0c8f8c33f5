"""An Indexer in the test process, built the way a worker process builds one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis
import sqlalchemy as sa

from chainpulse.devnet import Activity, Anvil
from chainpulse.settings import Settings
from indexer import models as m
from indexer.config import STREAM_KEY
from indexer.contracts import ContractsFile
from indexer.pipeline import Indexer
from indexer.schema import upgrade
from workers.runner import build


def build_indexer(
    rpc_url: str,
    database_url: str,
    redis_url: str,
    stream_maxlen: int = 100_000,
    contracts_file: ContractsFile | None = None,
) -> Indexer:
    settings = Settings(
        rpc_urls=(rpc_url,),
        database_url=database_url,
        redis_url=redis_url,
        stream_maxlen=stream_maxlen,
        contracts_file=contracts_file,
    )
    return build(settings).indexer


def close_indexer(indexer: Indexer) -> None:
    indexer.store.dispose()
    indexer.bus.close()


@contextlib.contextmanager
def migrated_indexer(rpc_url: str, database_url: str, redis_url: str) -> Iterator[Indexer]:
    """An indexer on a database migrated to the latest schema, closed afterwards."""
    upgrade(database_url)
    built = build_indexer(rpc_url, database_url, redis_url)
    try:
        yield built
    finally:
        close_indexer(built)


def first_block_indexed(anvil: Anvil, indexer: Indexer, blocks: int, txs: int) -> int:
    """Mine `blocks` blocks of `txs` transactions (half with logs) on `anvil`, index
    block 1 only, and return the head: what a fault test then indexes under its fault."""
    activity = Activity(anvil)
    for _ in range(blocks):
        activity.block(count=txs, log_share=0.5)
    indexer.index(1, 1, "backfill")
    return anvil.head()


def stored_as_on_node(anvil: Anvil, indexer: Indexer, head: int) -> None:
    """Blocks 1..head are stored with the node's hashes, parents and transactions."""
    with indexer.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.blocks.c.number, m.blocks.c.hash, m.blocks.c.parent_hash).order_by(
                m.blocks.c.number
            )
        ).all()
        transactions = conn.execute(
            sa.select(sa.func.count()).select_from(m.transactions)
        ).scalar_one()
    blocks = [anvil.call("eth_getBlockByNumber", hex(n), False) for n in range(1, head + 1)]
    assert [tuple(r) for r in rows] == [
        (int(b["number"], 16), b["hash"], b["parentHash"]) for b in blocks
    ]
    assert transactions == sum(len(b["transactions"]) for b in blocks)


def counts(indexer: Indexer) -> dict[str, Any]:
    """Rows per table, and transactions per height."""
    with indexer.store.engine.connect() as conn:
        out: dict[str, Any] = {}
        for table in (m.blocks, m.transactions, m.logs, m.outbox):
            out[table.name] = conn.execute(
                sa.select(sa.func.count()).select_from(table)
            ).scalar_one()
        per_height = conn.execute(
            sa.select(m.transactions.c.block_number, sa.func.count())
            .group_by(m.transactions.c.block_number)
            .order_by(m.transactions.c.block_number)
        ).all()
        out["per_height"] = [tuple(r) for r in per_height]
        return out


def stream_ids(redis_url: str) -> list[str]:
    """The ids of the stream's entries, in order."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [fields["id"] for _, fields in client.xrange(STREAM_KEY)]
    finally:
        client.close()
