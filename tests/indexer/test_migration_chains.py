"""Migration 0005: a database of the single-chain schema, with indexed blocks and prices,
upgrades in place (its rows given the chain it is bound to) and keeps serving."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from chainpulse.devnet import Activity, Anvil
from indexer import models as m
from indexer import queries
from indexer.blocks import fetch
from indexer.rpc import Node
from indexer.schema import upgrade
from indexer.store import Store
from tests.harness.indexer import build_indexer, close_indexer
from tests.harness.rows import rows_mismatch

CHAIN = 31337


def _old_rows(url: str) -> None:
    """What a single-chain deployment has written, in the 0004 schema's own columns."""
    now = datetime.now(UTC)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO chainpulse_meta (key, value) VALUES ('chain_id', :c)"),
            {"c": str(CHAIN)},
        )
        conn.execute(
            sa.text("INSERT INTO chainpulse_meta (key, value) VALUES ('follower_start', '1')")
        )
        conn.execute(
            sa.text("INSERT INTO failures (number, error, failed_at) VALUES (9, 'node away', :at)"),
            {"at": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO reorgs (detected_at, depth, ancestor_number, ancestor_hash, "
                "old_hashes, new_hashes) VALUES (:at, 1, 1, :h, '[]', '[]')"
            ),
            {"at": now, "h": "0x" + "11" * 32},
        )
        for token, block in (("ETH", 1), ("EUR", None)):
            conn.execute(
                sa.text(
                    "INSERT INTO prices (token, price, block_number, log_index, source, "
                    "updated_at, at_ms, price_key, stale) "
                    "VALUES (:t, '2.5', :b, :i, 's', :at, 1000, '1', :f)"
                ),
                {"t": token, "b": block, "i": 0 if block else None, "at": now, "f": False},
            )
    engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_single_chain_database_upgrades_in_place_and_keeps_serving(
    database_url: str, anvil: Anvil, redis_url: str
) -> None:
    upgrade(database_url, "0004")
    activity = Activity(anvil)
    for _ in range(3):
        activity.block(count=2, log_share=1.0)
    head = anvil.head()
    _old_rows(database_url)
    # blocks 1..head indexed by the release before chains: their rows, as it wrote them
    old = sa.create_engine(database_url)
    with old.begin() as conn:
        for data in fetch(Node((anvil.url,)), list(range(1, head + 1))):
            conn.execute(sa.text(_insert("blocks", data.block)), data.block)
            for tx in data.transactions:
                conn.execute(sa.text(_insert("transactions", tx)), tx)
            for log in data.logs:
                conn.execute(sa.text(_insert("logs", log)), log)
    old.dispose()

    upgrade(database_url)

    store = Store(database_url)
    try:
        assert rows_mismatch(anvil, store.engine, range(1, head + 1)) is None
        assert store.primary_chain() == CHAIN and store.chain == CHAIN
        assert store.summary().highest == head and store.summary().chain_id == CHAIN
        assert [f.number for f in store.failures()] == [9]
        assert store.get_meta("follower_start") == "1"
        with store.engine.connect() as conn:
            chains = dict(conn.execute(sa.select(m.prices.c.token, m.prices.c.chain_id)).all())
            assert chains == {"ETH": CHAIN, "EUR": None}
            [reorg] = conn.execute(sa.select(m.reorgs.c.chain_id)).scalars().all()
            assert reorg == CHAIN
            assert queries.latest_block_number(conn, CHAIN) == head
    finally:
        store.dispose()

    # and it keeps indexing: the next block, through the pipeline a worker runs
    activity.block(count=2, log_share=1.0)
    indexer = build_indexer(anvil.url, database_url, redis_url)
    try:
        [event] = indexer.index(head + 1, head + 1, "head")
        assert event.chainId == CHAIN
        assert rows_mismatch(anvil, indexer.store.engine, range(1, head + 2)) is None
    finally:
        close_indexer(indexer)


def _insert(table: str, row: dict[str, object]) -> str:
    names = ", ".join(row)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in row)})"  # noqa: S608


def test_a_database_with_rows_but_no_chain_is_not_guessed(sqlite_url: str) -> None:
    upgrade(sqlite_url, "0004")
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO failures (number, error, failed_at) VALUES (3, 'x', :at)"),
            {"at": datetime.now(UTC)},
        )
    engine.dispose()
    with pytest.raises(RuntimeError, match="bound to no chain"):
        upgrade(sqlite_url)
