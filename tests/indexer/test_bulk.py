"""Bulk writes (COPY on PostgreSQL): the upsert fallback, and errors that keep nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from indexer import models as m
from indexer.blocks import BlockData
from indexer.bulk import insert_rows
from indexer.errors import ConfigError
from indexer.store import Store


def block(number: int, tx_hashes: list[str]) -> BlockData:
    txs = [
        {
            "hash": tx_hash,
            "block_number": number,
            "transaction_index": i,
            "from_address": "0x" + "aa" * 20,
            "to_address": None,
            "value": 2**256 - 1,
            "gas": 21_000,
            "gas_price": None,
            "nonce": i,
            "status": 1,
            "gas_used": 21_000,
            "contract_address": "0x" + "cc" * 20,
        }
        for i, tx_hash in enumerate(tx_hashes)
    ]
    logs = [
        {
            "block_number": number,
            "log_index": 0,
            "transaction_hash": tx_hashes[0],
            "address": "0x" + "dd" * 20,
            "topic0": "0x" + "01" * 32,
            "topic1": None,
            "topic2": None,
            "topic3": None,
            "data": "0x\t\\\n'",  # COPY's own separators and escapes, stored as given
        }
    ]
    row = {
        "number": number,
        "hash": "0x" + f"{number:064x}",
        "parent_hash": "0x" + f"{number + 1000:064x}",
        "timestamp": 1_700_000_000 + number,
        "tx_count": len(txs),
        "gas_used": 21_000 * len(txs),
        "gas_limit": 30_000_000,
        "base_fee_per_gas": None,
        "miner": "0x" + "ee" * 20,
        "indexed_at": datetime.now(UTC),
    }
    return BlockData(block=row, transactions=txs, logs=logs)


CHAIN = 31337


@pytest.fixture
def store(migrated_url: str) -> Iterator[Store]:
    built = Store(migrated_url, chain_id=CHAIN)
    yield built
    built.dispose()


def test_rows_round_trip_exactly(store: Store) -> None:
    data = block(5, ["0x" + "01" * 32, "0x" + "02" * 32])
    store.save_blocks([data], "backfill")
    with store.engine.connect() as conn:
        txs = [dict(r) for r in conn.execute(sa.select(m.transactions).order_by("hash")).mappings()]
        [log] = [dict(r) for r in conn.execute(sa.select(m.logs)).mappings()]
        stored = dict(conn.execute(sa.select(m.blocks)).mappings().one())
    assert txs == [{**tx, "chain_id": CHAIN} for tx in data.transactions]
    assert log == {**data.logs[0], "chain_id": CHAIN}
    at = stored.pop("indexed_at")
    expected = {**data.block, "chain_id": CHAIN}
    assert (at if at.tzinfo else at.replace(tzinfo=UTC)) == expected.pop("indexed_at")
    assert stored == expected


def test_a_transaction_held_by_another_stored_block_moves(store: Store) -> None:
    """A stale orphan at height 5 holds the hash; block 7 (not its neighbour) takes it."""
    moved, fresh = "0x" + "0a" * 32, "0x" + "0b" * 32
    store.save_blocks([block(5, [moved])], "backfill")
    store.save_blocks([block(7, [fresh, moved])], "backfill")
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.transactions.c.hash, m.transactions.c.block_number).order_by("hash")
        ).all()
        heights = conn.execute(sa.select(m.blocks.c.number).order_by("number")).scalars().all()
        short = store.incomplete_blocks(conn, 5, 7)
    assert [tuple(r) for r in rows] == [(moved, 7), (fresh, 7)]
    assert heights == [5, 7]
    assert short == [5]  # what a reorg repair re-fetches


def test_a_failed_bulk_write_keeps_nothing(store: Store) -> None:
    store.save_blocks([block(5, ["0x" + "01" * 32])], "backfill")
    clash = block(6, ["0x" + "02" * 32])
    clash.block["hash"] = "0x" + f"{5:064x}"  # block 5's hash: the unique index refuses it
    with pytest.raises(sa.exc.IntegrityError), store.writing() as conn:
        insert_rows(conn, m.transactions, [{**t, "chain_id": CHAIN} for t in clash.transactions])
        insert_rows(conn, m.blocks, [{**clash.block, "chain_id": CHAIN}])
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(m.blocks)).scalar_one() == 1
        hashes = conn.execute(sa.select(m.transactions.c.hash)).scalars().all()
    assert hashes == ["0x" + "01" * 32]


def test_two_chains_keep_the_same_heights_and_hashes_apart(store: Store) -> None:
    """Two anvils started in the same second have the same genesis and block hashes:
    each chain's rows are its own, and a reorg of one deletes none of the other's."""
    other = Store(store.url, store.engine, chain_id=CHAIN + 1)
    shared = "0x" + "0c" * 32
    for chain_store in (store, other):
        chain_store.save_blocks([block(5, [shared]), block(7, ["0x" + "0d" * 32])], "backfill")
    with store.writing() as conn:
        store.delete_heights(conn, [7])
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.blocks.c.chain_id, m.blocks.c.number).order_by("chain_id", "number")
        ).all()
        txs = conn.execute(sa.select(m.transactions.c.chain_id, m.transactions.c.hash)).all()
    assert [tuple(r) for r in rows] == [(CHAIN, 5), (CHAIN + 1, 5), (CHAIN + 1, 7)]
    assert sorted(tuple(t) for t in txs) == [
        (CHAIN, shared),
        (CHAIN + 1, shared),
        (CHAIN + 1, "0x" + "0d" * 32),
    ]
    assert store.stored_hashes(1, 9).keys() == {5}
    assert other.stored_hashes(1, 9).keys() == {5, 7}


def test_an_unbound_store_writes_no_blocks(migrated_url: str) -> None:
    unbound = Store(migrated_url)
    try:
        assert unbound.chain == 0  # reads find no rows
        with pytest.raises(ConfigError, match="bound to no chain"):
            unbound.save_blocks([block(5, ["0x" + "01" * 32])], "backfill")
    finally:
        unbound.dispose()
