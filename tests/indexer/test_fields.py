"""Every stored field equals what the node returns over raw JSON-RPC (SQLite and PostgreSQL).

The chain holds plain transfers, contract deployments, reverted calls, calls that emit
logs, an empty block and one transfer of 2**127 + 12345 wei (anvil refuses a transaction
whose value plus fee reaches 2**128, so 2**256-1 is covered with plain data in test_models).
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from chainpulse.devnet import PINGER_TOPIC, Activity, Anvil, wait_until
from indexer import models as m
from indexer.pipeline import Indexer
from tests.harness.indexer import build_indexer, close_indexer

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


def q(value: str | None) -> int | None:
    return None if value is None else int(value, 16)


def low(value: str | None) -> str | None:
    return None if value is None else value.lower()


def expected_rows(anvil: Anvil, numbers: range) -> tuple[list[Any], list[Any], list[Any]]:
    """Rows as the Database contract defines them, read from the node's raw JSON."""
    calls: list[tuple[str, list[Any]]] = []
    for n in numbers:
        calls += [("eth_getBlockByNumber", [hex(n), True]), ("eth_getBlockReceipts", [hex(n)])]
    replies = anvil.batch(calls)
    blocks, txs, logs = [], [], []
    for i, n in enumerate(numbers):
        block, receipts = replies[2 * i], replies[2 * i + 1]
        by_hash = {r["transactionHash"]: r for r in receipts}
        blocks.append(
            {
                "number": n,
                "hash": low(block["hash"]),
                "parent_hash": low(block["parentHash"]),
                "timestamp": q(block["timestamp"]),
                "tx_count": len(block["transactions"]),
                "gas_used": q(block["gasUsed"]),
                "gas_limit": q(block["gasLimit"]),
                "base_fee_per_gas": q(block.get("baseFeePerGas")),
                "miner": low(block["miner"]),
            }
        )
        for tx in block["transactions"]:
            receipt = by_hash[tx["hash"]]
            txs.append(
                {
                    "hash": low(tx["hash"]),
                    "block_number": n,
                    "transaction_index": q(tx["transactionIndex"]),
                    "from_address": low(tx["from"]),
                    "to_address": low(tx["to"]),
                    "value": q(tx["value"]),
                    "gas": q(tx["gas"]),
                    "gas_price": q(tx["gasPrice"]),
                    "nonce": q(tx["nonce"]),
                    "status": q(receipt["status"]),
                    "gas_used": q(receipt["gasUsed"]),
                    "contract_address": low(receipt["contractAddress"]),
                }
            )
            for log in receipt["logs"]:
                topics = [low(t) for t in log["topics"]] + [None] * 4
                logs.append(
                    {
                        "block_number": n,
                        "log_index": q(log["logIndex"]),
                        "transaction_hash": low(tx["hash"]),
                        "address": low(log["address"]),
                        **{f"topic{k}": topics[k] for k in range(4)},
                        "data": low(log["data"]),
                    }
                )
    return blocks, txs, logs


def stored_rows(indexer: Indexer) -> tuple[list[Any], list[Any], list[Any]]:
    with indexer.store.engine.connect() as conn:
        blocks = [dict(r) for r in conn.execute(sa.select(m.blocks).order_by("number")).mappings()]
        txs = conn.execute(
            sa.select(m.transactions).order_by("block_number", "transaction_index")
        ).mappings()
        logs = conn.execute(sa.select(m.logs).order_by("block_number", "log_index")).mappings()
        return blocks, [dict(r) for r in txs], [dict(r) for r in logs]


def test_stored_rows_equal_the_node(anvil: Anvil, indexer: Indexer) -> None:
    huge_tx = make_chain(anvil)
    head = anvil.head()
    started = datetime.now(UTC) - timedelta(seconds=1)

    events = indexer.index(1, head, "backfill")

    assert [e.blockNumber for e in events] == list(range(1, head + 1))
    blocks, txs, logs = stored_rows(indexer)
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


def test_huge_value_is_exact_in_sql(anvil: Anvil, indexer: Indexer) -> None:
    huge_tx = make_chain(anvil)
    indexer.index(anvil.head(), anvil.head(), "backfill")
    with indexer.store.engine.connect() as conn:
        as_text = "value" if indexer.store.dialect == "sqlite" else "value::text"
        raw = conn.execute(
            sa.text(f"SELECT {as_text} FROM transactions WHERE hash = :h"), {"h": huge_tx}
        ).scalar_one()
    assert raw == str(HUGE)
