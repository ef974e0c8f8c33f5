"""Rows as the Database contract defines them (docs/database.md), read from the node's
raw JSON-RPC, and the rows as stored: the field-by-field comparison of a database with
the node."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from chainpulse.devnet import Anvil
from indexer import models as m


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
    chain = anvil.chain_id
    blocks, txs, logs = [], [], []
    for i, n in enumerate(numbers):
        block, receipts = replies[2 * i], replies[2 * i + 1]
        by_hash = {r["transactionHash"]: r for r in receipts}
        blocks.append(
            {
                "chain_id": chain,
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
                    "chain_id": chain,
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
                        "chain_id": chain,
                        "block_number": n,
                        "log_index": q(log["logIndex"]),
                        "transaction_hash": low(tx["hash"]),
                        "address": low(log["address"]),
                        **{f"topic{k}": topics[k] for k in range(4)},
                        "data": low(log["data"]),
                    }
                )
    return blocks, txs, logs


def stored_rows(engine: Engine, chain: int) -> tuple[list[Any], list[Any], list[Any]]:
    """`chain`'s rows of the blocks, transactions and logs tables, in chain order."""
    with engine.connect() as conn:
        blocks = conn.execute(
            sa.select(m.blocks).where(m.blocks.c.chain_id == chain).order_by("number")
        ).mappings()
        txs = conn.execute(
            sa.select(m.transactions)
            .where(m.transactions.c.chain_id == chain)
            .order_by("block_number", "transaction_index")
        ).mappings()
        logs = conn.execute(
            sa.select(m.logs)
            .where(m.logs.c.chain_id == chain)
            .order_by("block_number", "log_index")
        ).mappings()
        return [dict(r) for r in blocks], [dict(r) for r in txs], [dict(r) for r in logs]


def rows_mismatch(anvil: Anvil, engine: Engine, numbers: range, chunk: int = 200) -> str | None:
    """Where the stored blocks, transactions and logs of `anvil`'s chain differ from the
    node's, field by field, for heights `numbers` (and nothing stored outside them); None
    when equal."""
    blocks, txs, logs = stored_rows(engine, anvil.chain_id)
    for row in blocks:
        row.pop("indexed_at")
    want: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    for at in range(numbers.start, numbers.stop, chunk):
        part = expected_rows(anvil, range(at, min(at + chunk, numbers.stop)))
        for into, rows in zip(want, part, strict=True):
            into.extend(rows)
    for name, got, expected in zip(
        ("blocks", "transactions", "logs"), (blocks, txs, logs), want, strict=True
    ):
        if got != expected:
            wrong = next(
                (f"{g} != {e}" for g, e in zip(got, expected, strict=False) if g != e),
                f"{len(got)} rows against {len(expected)}",
            )
            return f"{name} differ from the node: {wrong}"
    return None
