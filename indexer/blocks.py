"""Decoding raw JSON-RPC blocks and receipts into the rows chainpulse stores.

Only stored fields are decoded. Hashes and addresses become lowercase `0x` hex;
quantities become Python ints (exact, whatever their size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from indexer.errors import RpcError
from indexer.rpc import Node

Row = dict[str, Any]


@dataclass(frozen=True)
class BlockData:
    """One block ready to store: its row, its transactions' rows and its logs' rows."""

    block: Row
    transactions: list[Row]
    logs: list[Row]

    @property
    def number(self) -> int:
        return int(self.block["number"])

    @property
    def hash(self) -> str:
        return str(self.block["hash"])

    @property
    def parent_hash(self) -> str:
        return str(self.block["parent_hash"])


def _int(value: str | int | None) -> int | None:
    if value is None:
        return None
    return value if isinstance(value, int) else int(value, 16)


def _hex(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def fetch(node: Node, numbers: Sequence[int]) -> list[BlockData]:
    """The blocks at `numbers` with their receipts, in one round trip, ready to store.

    The one read behind every write: a job, a reorg repair and its re-read of blocks
    left short of a transaction all come through here.
    """
    return [decode(block, receipts) for block, receipts in node.blocks_with_receipts(numbers)]


def decode(raw: dict[str, Any], receipts: list[dict[str, Any]]) -> BlockData:
    """Rows for a full block (`eth_getBlockByNumber(n, true)`) and its receipts."""
    try:
        return _decode(raw, receipts)
    except (KeyError, TypeError, ValueError) as exc:
        raise RpcError(f"block {raw.get('number')} has an unexpected shape: {exc!r}") from exc


def _decode(raw: dict[str, Any], receipts: list[dict[str, Any]]) -> BlockData:
    number = int(raw["number"], 16)
    by_hash = {r["transactionHash"].lower(): r for r in receipts}
    txs: list[Row] = []
    logs: list[Row] = []
    for tx in raw["transactions"]:
        tx_hash = tx["hash"].lower()
        receipt = by_hash[tx_hash]
        txs.append(
            {
                "hash": tx_hash,
                "block_number": number,
                "transaction_index": int(tx["transactionIndex"], 16),
                "from_address": tx["from"].lower(),
                "to_address": _hex(tx.get("to")),
                "value": int(tx["value"], 16),
                "gas": int(tx["gas"], 16),
                "gas_price": _int(tx.get("gasPrice")),
                "nonce": int(tx["nonce"], 16),
                "status": _int(receipt.get("status")),
                "gas_used": _int(receipt.get("gasUsed")),
                "contract_address": _hex(receipt.get("contractAddress")),
            }
        )
        for entry in receipt["logs"]:
            topics = [t.lower() for t in entry["topics"]] + [None] * 4
            logs.append(
                {
                    "block_number": number,
                    "log_index": int(entry["logIndex"], 16),
                    "transaction_hash": tx_hash,
                    "address": entry["address"].lower(),
                    "topic0": topics[0],
                    "topic1": topics[1],
                    "topic2": topics[2],
                    "topic3": topics[3],
                    "data": entry["data"].lower(),
                }
            )
    block = {
        "number": number,
        "hash": raw["hash"].lower(),
        "parent_hash": raw["parentHash"].lower(),
        "timestamp": int(raw["timestamp"], 16),
        "tx_count": len(txs),
        "gas_used": int(raw["gasUsed"], 16),
        "gas_limit": int(raw["gasLimit"], 16),
        "base_fee_per_gas": _int(raw.get("baseFeePerGas")),
        "miner": raw["miner"].lower(),
        "indexed_at": datetime.now(UTC),
    }
    return BlockData(block=block, transactions=txs, logs=logs)
