"""Every stored field equals what the node returns over raw JSON-RPC (SQLite and PostgreSQL).

The chain holds plain transfers, contract deployments, reverted calls, calls that emit
logs, an empty block and one transfer of 2**127 + 12345 wei (anvil refuses a transaction
whose value plus fee reaches 2**128, so 2**256-1 is covered with plain data in test_models).
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from chainpulse.devnet import PINGER_TOPIC, Activity, Anvil, wait_until
from indexer import models as m
from indexer.pipeline import Indexer
from tests.harness.indexer import build_indexer, close_indexer
from tests.harness.rows import expected_rows, rows_mismatch, stored_rows

HUGE = 2**127 + 12345  # beyond int64 and float precision: 39 digits


@pytest.fixture
def indexer(anvil: Anvil, migrated_url: str, redis_url: str) -> Iterator[Indexer]:
    built = build_indexer(anvil.url, migrated_url, redis_url)
    yield built
    close_indexer(built)


def make_chain(anvil: Anvil) -> str:
    """Mine the fixture chain; returns the hash of the huge transfer."""
    activity = Activity(anvil)
    for _ in range(3):
        activity.block(count=8, log_share=0.5, reverts=2, deploys=1)
    anvil.mine()  # an empty block
    rich, poor = activity.accounts[9], activity.accounts[8]
    anvil.call("anvil_setBalance", rich, hex(2**129))
    tx = str(
        anvil.call(
            "eth_sendTransaction",
            {"from": rich, "to": poor, "value": hex(HUGE), "gas": hex(21_000)},
        )
    ).lower()
    # automine answers before the block is mined: the head must include the transfer
    wait_until(lambda: anvil.call("eth_getTransactionReceipt", tx), 30, "the transfer mined")
    return tx


def test_stored_rows_equal_the_node(anvil: Anvil, indexer: Indexer) -> None:
    huge_tx = make_chain(anvil)
    head = anvil.head()
    started = datetime.now(UTC) - timedelta(seconds=1)

    events = indexer.index(1, head, "backfill")

    assert [e.blockNumber for e in events] == list(range(1, head + 1))
    blocks, txs, logs = stored_rows(indexer.store.engine, anvil.chain_id)
    want_blocks, want_txs, want_logs = expected_rows(anvil, range(1, head + 1))
    for row in blocks:
        indexed_at = row.pop("indexed_at")
        if indexed_at.tzinfo is None:  # SQLite keeps no zone; chainpulse writes UTC
            indexed_at = indexed_at.replace(tzinfo=UTC)
        assert started <= indexed_at <= datetime.now(UTC)
    assert blocks == want_blocks
    assert txs == want_txs
    assert logs == want_logs

    # The chain really has what this test claims to cover.
    assert {t["status"] for t in txs} == {0, 1}
    deployments = [t for t in txs if t["to_address"] is None]
    assert len(deployments) == 4 and all(t["contract_address"] for t in deployments)
    assert all(t["contract_address"] is None for t in txs if t["to_address"] is not None)
    assert {row["topic0"] for row in logs} == {PINGER_TOPIC}
    assert any(b["tx_count"] == 0 for b in blocks)
    assert [t["value"] for t in txs if t["hash"] == huge_tx] == [HUGE]
    for row in blocks + txs + logs:
        for key, value in row.items():
            if isinstance(value, str):
                assert value == value.lower() and value.startswith("0x"), (key, value)


def test_the_fault_suites_comparison_finds_a_changed_field_and_an_orphan(
    anvil: Anvil, indexer: Indexer
) -> None:
    make_chain(anvil)
    head = anvil.head()
    indexer.index(1, head, "backfill")
    assert rows_mismatch(anvil, indexer.store.engine, range(1, head + 1), chunk=3) is None
    assert "blocks differ" in str(rows_mismatch(anvil, indexer.store.engine, range(1, head)))

    with indexer.store.engine.begin() as conn:
        changed = conn.execute(sa.select(sa.func.min(m.logs.c.block_number))).scalar_one()
        conn.execute(sa.update(m.logs).where(m.logs.c.block_number == changed).values(data="0x"))
    assert "logs differ" in str(rows_mismatch(anvil, indexer.store.engine, range(1, head + 1)))


def test_huge_value_is_exact_in_sql(anvil: Anvil, indexer: Indexer) -> None:
    huge_tx = make_chain(anvil)
    indexer.index(anvil.head(), anvil.head(), "backfill")
    with indexer.store.engine.connect() as conn:
        as_text = "value" if indexer.store.dialect == "sqlite" else "value::text"
        raw = conn.execute(
            sa.text(f"SELECT {as_text} FROM transactions WHERE hash = :h"), {"h": huge_tx}
        ).scalar_one()
    assert raw == str(HUGE)
