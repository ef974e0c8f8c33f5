"""Rows put straight into a database (blocks, prices, reorgs), for tests of what reads
them; the database migrated as everywhere else and bound to CHAIN, its primary chain."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from indexer.events import BlockReorged
from indexer.exact import sort_key
from indexer.models import blocks, meta, prices, reorgs
from indexer.queries import PRIMARY_KEY
from indexer.schema import upgrade
from tests.harness.events import block_hash

CHAIN = 31337  # anvil's chain id


def make_database(path: Path) -> str:
    """A SQLite database at `path`, migrated as `chainpulse db upgrade` does; its URL."""
    url = f"sqlite:///{path}"
    upgrade(url)
    with sa.create_engine(url).begin() as conn:
        conn.execute(meta.insert(), {"chain_id": CHAIN, "key": PRIMARY_KEY, "value": str(CHAIN)})
    return url


def insert_blocks(url: str, numbers: range | list[int], fork: int = 0, chain: int = CHAIN) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "chain_id": chain,
            "number": n,
            "hash": block_hash(n, fork),
            "parent_hash": block_hash(n - 1, fork),
            "timestamp": 1_700_000_000 + n,
            "tx_count": n % 7,
            "gas_used": 21_000,
            "gas_limit": 30_000_000,
            "base_fee_per_gas": 10**9,
            "miner": "0x" + "ab" * 20,
            "indexed_at": now,
        }
        for n in numbers
    ]
    with sa.create_engine(url).begin() as conn:
        conn.execute(blocks.insert(), rows)


def insert_price(url: str, token: str, price: str, number: int | None) -> None:
    """A stored price: at block `number` (taken to be `number` seconds after the epoch),
    or a manual price published now when `number` is None."""
    now = datetime.now(UTC)
    with sa.create_engine(url).begin() as conn:
        conn.execute(
            prices.insert(),
            {
                "chain_id": CHAIN if number is not None else None,
                "token": token,
                "price": Decimal(price),
                "block_number": number,
                "log_index": 0 if number is not None else None,
                "source": "db",
                "updated_at": now,
                "at_ms": number * 1000 if number is not None else int(now.timestamp() * 1000),
                "price_key": sort_key(Decimal(price)),
            },
        )


def insert_reorg(url: str, event: BlockReorged, chain: int = CHAIN) -> None:
    with sa.create_engine(url).begin() as conn:
        conn.execute(
            reorgs.insert(),
            {
                "chain_id": chain,
                "detected_at": datetime.now(UTC),
                "depth": event.depth,
                "ancestor_number": event.commonAncestor.number,
                "ancestor_hash": event.commonAncestor.hash,
                "old_hashes": json.dumps([r.__dict__ for r in event.removed]),
                "new_hashes": json.dumps([r.__dict__ for r in event.added]),
            },
        )
