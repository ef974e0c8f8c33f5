"""The read side over the database: latest blocks, a block by number, canonical blocks
between heights, the latest price per token and the reorg that removed a block.

Workers write these tables (`indexer.store`); this module only reads them. Every
function takes a SQLAlchemy `Connection` so callers decide where the call runs (the
realtime server runs them off the eventlet hub, in `eventlet.tpool`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from indexer.models import blocks, prices, reorgs


@dataclass(frozen=True)
class BlockRow:
    number: int
    hash: str
    parent_hash: str
    timestamp: int  # chain time, seconds
    tx_count: int
    gas_used: int
    gas_limit: int
    base_fee_per_gas: int | None
    miner: str


@dataclass(frozen=True)
class PriceRow:
    token: str
    price: Decimal
    block_number: int | None
    source: str
    updated_at_ms: int  # milliseconds since the epoch


@dataclass(frozen=True)
class ReorgRow:
    depth: int
    ancestor_number: int
    ancestor_hash: str
    removed: list[dict[str, Any]]  # [{number, hash}]
    added: list[dict[str, Any]]


def _block(row: Any) -> BlockRow:
    return BlockRow(
        number=int(row.number),
        hash=row.hash,
        parent_hash=row.parent_hash,
        timestamp=int(row.timestamp),
        tx_count=int(row.tx_count),
        gas_used=int(row.gas_used),
        gas_limit=int(row.gas_limit),
        base_fee_per_gas=row.base_fee_per_gas,
        miner=row.miner,
    )


def latest_block_number(conn: Connection) -> int | None:
    """The highest indexed block number, or None on an empty database."""
    value = conn.execute(sa.select(sa.func.max(blocks.c.number))).scalar()
    return None if value is None else int(value)


def latest_blocks(conn: Connection, limit: int) -> list[BlockRow]:
    """Up to `limit` blocks, newest first."""
    rows = conn.execute(sa.select(blocks).order_by(blocks.c.number.desc()).limit(limit))
    return [_block(row) for row in rows]


def block_by_number(conn: Connection, number: int) -> BlockRow | None:
    row = conn.execute(sa.select(blocks).where(blocks.c.number == number)).first()
    return None if row is None else _block(row)


def blocks_between(conn: Connection, after: int, up_to: int) -> list[BlockRow]:
    """Canonical blocks with `after < number <= up_to`, in ascending order.

    The main tables hold the canonical chain only, so heights missing here were never
    indexed (or failed for good); callers must not assume the list is contiguous.
    """
    rows = conn.execute(
        sa.select(blocks)
        .where(blocks.c.number > after, blocks.c.number <= up_to)
        .order_by(blocks.c.number)
    )
    return [_block(row) for row in rows]


def _price(row: Any) -> PriceRow:
    updated = row.updated_at
    return PriceRow(
        token=row.token,
        price=Decimal(row.price),
        block_number=None if row.block_number is None else int(row.block_number),
        source=row.source,
        updated_at_ms=int(updated.timestamp() * 1000) if updated is not None else 0,
    )


def latest_price(conn: Connection, token: str) -> PriceRow | None:
    """The newest row for `token` (the table holds canonical updates only)."""
    row = conn.execute(
        sa.select(prices).where(prices.c.token == token).order_by(prices.c.id.desc()).limit(1)
    ).first()
    return None if row is None else _price(row)


def latest_prices(conn: Connection) -> list[PriceRow]:
    """The newest row of every token, sorted by token."""
    newest = (
        sa.select(prices.c.token, sa.func.max(prices.c.id).label("id"))
        .group_by(prices.c.token)
        .subquery()
    )
    rows = conn.execute(
        sa.select(prices).join(newest, prices.c.id == newest.c.id).order_by(prices.c.token)
    )
    return [_price(row) for row in rows]


def reorg_removing(conn: Connection, number: int, block_hash: str) -> ReorgRow | None:
    """The most recent reorg whose removed blocks include (`number`, `block_hash`)."""
    candidates = conn.execute(
        sa.select(reorgs)
        .where(
            reorgs.c.ancestor_number < number,
            reorgs.c.old_hashes.contains(block_hash.lower()),
        )
        .order_by(reorgs.c.id.desc())
        .limit(16)
    )
    for row in candidates:
        removed = json.loads(row.old_hashes)
        if any(
            int(ref["number"]) == number and str(ref["hash"]).lower() == block_hash.lower()
            for ref in removed
        ):
            return ReorgRow(
                depth=int(row.depth),
                ancestor_number=int(row.ancestor_number),
                ancestor_hash=row.ancestor_hash,
                removed=removed,
                added=json.loads(row.new_hashes),
            )
    return None
