"""Decoding raw JSON-RPC blocks and receipts into the rows chainpulse stores.

Only stored fields are decoded. Hashes and addresses become lowercase `0x` hex of
their exact length (66 and 42 characters, the columns' widths); anything else is a
node answering garbage. Quantities become Python ints (exact, whatever their size).
"""

from __future__ import annotations

import re
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


_HASH = re.compile(r"0x[0-9a-f]{64}")
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")


def _hash(value: str) -> str:
    return _checked(_HASH, value, "hash")


def _address(value: str | None) -> str | None:
    return None if value is None else _checked(_ADDRESS, value, "address")


def _checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    lowered = value.lower()
    if not pattern.fullmatch(lowered):
        raise ValueError(f"not a {what}: {value[:80]!r}")
    return lowered


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
    by_hash = {_hash(r["transactionHash"]): r for r in receipts}
    txs: list[Row] = []
    logs: list[Row] = []
    for tx in raw["transactions"]:
        tx_hash = _hash(tx["hash"])
        receipt = by_hash[tx_hash]
        txs.append(
            {
                "hash": tx_hash,
                "block_number": number,
                "transaction_index": int(tx["transactionIndex"], 16),
                "from_address": _address(tx["from"]),
                "to_address": _address(tx.get("to")),
                "value": int(tx["value"], 16),
                "gas": int(tx["gas"], 16),
                "gas_price": _int(tx.get("gasPrice")),
                "nonce": int(tx["nonce"], 16),
                "status": _int(receipt.get("status")),
                "gas_used": _int(receipt.get("gasUsed")),
                "contract_address": _address(receipt.get("contractAddress")),
            }
        )
        for entry in receipt["logs"]:
            if len(entry["topics"]) > 4:
                raise ValueError(f"a log with {len(entry['topics'])} topics")
            topics = [_hash(t) for t in entry["topics"]] + [None] * 4
            logs.append(
                {
                    "block_number": number,
                    "log_index": int(entry["logIndex"], 16),
                    "transaction_hash": tx_hash,
                    "address": _address(entry["address"]),
                    "topic0": topics[0],
                    "topic1": topics[1],
                    "topic2": topics[2],
                    "topic3": topics[3],
                    "data": entry["data"].lower(),
                }
            )
    block = {
        "number": number,
        "hash": _hash(raw["hash"]),
        "parent_hash": _hash(raw["parentHash"]),
        "timestamp": int(raw["timestamp"], 16),
        "tx_count": len(txs),
        "gas_used": int(raw["gasUsed"], 16),
        "gas_limit": int(raw["gasLimit"], 16),
        "base_fee_per_gas": _int(raw.get("baseFeePerGas")),
        "miner": _address(raw["miner"]),
        "indexed_at": datetime.now(UTC),
    }
    return BlockData(block=block, transactions=txs, logs=logs)
