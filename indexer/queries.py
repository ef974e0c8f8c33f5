"""The read side over the database: latest blocks, a block by number, canonical blocks
between heights, prices (latest, history, candles) and the reorg that removed a block.

Workers write these tables (`indexer.store`); this module only reads them. Every
function takes a SQLAlchemy `Connection` so callers decide where the call runs (the
realtime server runs them off the eventlet hub, in `eventlet.tpool`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from indexer.event_store import stream_event
from indexer.finality import KEY as FINALITY_KEY
from indexer.finality import Marks
from indexer.models import blocks, contract_events, meta, outbox, prices, reorgs
from indexer.models import contract_children as contract_children_table

PRIMARY_KEY = "chain_id"  # chainpulse_meta, under the primary chain: the database's binding


@dataclass(frozen=True)
class BlockRow:
    chain_id: int
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
    chain_id: int | None  # null for manual prices
    token: str
    price: Decimal
    block_number: int | None  # null for manual prices
    log_index: int | None
    source: str
    updated_at_ms: int  # when it was stored, milliseconds since the epoch
    at_ms: int  # when it took effect: the block's timestamp, or the publish time
    quote: str | None
    feed_updated_at: int | None  # a feed's `updatedAt`, seconds
    stale: bool = False  # the row repeats the last good price (docs/prices.md)
    stale_reason: str | None = None


@dataclass(frozen=True)
class Candle:
    start_ms: int  # the interval's start, milliseconds since the epoch
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    count: int


@dataclass(frozen=True)
class ReorgRow:
    depth: int
    ancestor_number: int
    ancestor_hash: str
    removed: list[dict[str, Any]]  # [{number, hash}]
    added: list[dict[str, Any]]


def _block(row: Any) -> BlockRow:
    return BlockRow(
        chain_id=int(row.chain_id),
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


def primary_chain(conn: Connection) -> int | None:
    """The chain this database was first bound to (its primary), or None before any."""
    value = (
        conn.execute(
            sa.select(meta.c.value).where(meta.c.key == PRIMARY_KEY).order_by(meta.c.chain_id)
        )
        .scalars()
        .first()
    )
    return None if value is None else int(value)


def finality_marks(conn: Connection, chain: int) -> Marks | None:
    """`chain`'s safe and finalized blocks as the follower last announced them."""
    value = conn.execute(
        sa.select(meta.c.value).where(meta.c.chain_id == chain, meta.c.key == FINALITY_KEY)
    ).scalar_one_or_none()
    return None if value is None else Marks.from_json(value)


def latest_block_number(conn: Connection, chain: int) -> int | None:
    """`chain`'s highest indexed block number, or None when it has none."""
    value = conn.execute(
        sa.select(sa.func.max(blocks.c.number)).where(blocks.c.chain_id == chain)
    ).scalar()
    return None if value is None else int(value)


def outbox_backlog(conn: Connection) -> int:
    """Events committed but not yet appended to the stream."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar() or 0)


def latest_blocks(conn: Connection, chain: int, limit: int) -> list[BlockRow]:
    """Up to `limit` of `chain`'s blocks, newest first."""
    rows = conn.execute(
        sa.select(blocks)
        .where(blocks.c.chain_id == chain)
        .order_by(blocks.c.number.desc())
        .limit(limit)
    )
    return [_block(row) for row in rows]


def block_by_number(conn: Connection, chain: int, number: int) -> BlockRow | None:
    row = conn.execute(
        sa.select(blocks).where(blocks.c.chain_id == chain, blocks.c.number == number)
    ).first()
    return None if row is None else _block(row)


def blocks_between(conn: Connection, chain: int, after: int, up_to: int) -> list[BlockRow]:
    """`chain`'s canonical blocks with `after < number <= up_to`, in ascending order.

    The main tables hold the canonical chain only, so heights missing here were never
    indexed (or failed for good); callers must not assume the list is contiguous.
    """
    rows = conn.execute(
        sa.select(blocks)
        .where(blocks.c.chain_id == chain, blocks.c.number > after, blocks.c.number <= up_to)
        .order_by(blocks.c.number)
    )
    return [_block(row) for row in rows]


def contract_events_between(
    conn: Connection,
    chain: int,
    after: int,
    up_to: int,
    contract: str | None = None,
    event: str | None = None,
    columns: Sequence[tuple[str, Iterable[str]]] = (),
) -> list[dict[str, Any]]:
    """`chain`'s decoded events of blocks `after < number <= up_to`, in chain order, as
    `block.indexed` carries them: all, or one contract's (one event's), where each
    indexed column in `columns` holds one of its values."""
    e = contract_events.c
    query = sa.select(contract_events).where(
        e.chain_id == chain, e.block_number > after, e.block_number <= up_to
    )
    if contract is not None:
        query = query.where(e.contract == contract)
    if event is not None:
        query = query.where(e.event == event)
    for column, values in columns:
        query = query.where(e[column].in_(sorted(values)))
    rows = conn.execute(query.order_by(e.block_number, e.log_index)).mappings()
    return [stream_event(dict(row)) for row in rows]


def contract_events_page(
    conn: Connection,
    chain: int,
    contract: str,
    event: str,
    columns: Sequence[tuple[str, Iterable[str]]],
    from_block: int | None,
    to_block: int | None,
    before: tuple[int, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """One event's stored events, newest first: at most `limit`, in blocks
    `from_block..to_block`, before (block, log index) `before`, where each indexed column
    in `columns` holds one of its values."""
    e = contract_events.c
    query = sa.select(contract_events).where(
        e.chain_id == chain, e.contract == contract, e.event == event
    )
    for column, values in columns:
        query = query.where(e[column].in_(sorted(values)))
    if from_block is not None:
        query = query.where(e.block_number >= from_block)
    if to_block is not None:
        query = query.where(e.block_number <= to_block)
    if before is not None:
        query = query.where(sa.tuple_(e.block_number, e.log_index) < before)
    query = query.order_by(e.block_number.desc(), e.log_index.desc()).limit(limit)
    return [stream_event(dict(row)) for row in conn.execute(query).mappings()]


def contract_children(
    conn: Connection, chain: int, contract: str, after: str | None, limit: int
) -> list[tuple[str, int, int]]:
    """A factory contract's children (address, block, log index), by address, after
    the address `after`."""
    c = contract_children_table.c
    query = sa.select(c.address, c.block_number, c.log_index).where(
        c.chain_id == chain, c.contract == contract
    )
    if after is not None:
        query = query.where(c.address > after)
    rows = conn.execute(query.order_by(c.address).limit(limit))
    return [(r.address, int(r.block_number), int(r.log_index)) for r in rows]


def _price(row: Any) -> PriceRow:
    updated = row.updated_at
    return PriceRow(
        chain_id=None if row.chain_id is None else int(row.chain_id),
        token=row.token,
        price=Decimal(row.price),
        block_number=None if row.block_number is None else int(row.block_number),
        log_index=None if row.log_index is None else int(row.log_index),
        source=row.source,
        updated_at_ms=int(updated.timestamp() * 1000) if updated is not None else 0,
        at_ms=int(row.at_ms),
        quote=row.quote,
        feed_updated_at=None if row.feed_updated_at is None else int(row.feed_updated_at),
        stale=bool(row.stale),
        stale_reason=row.stale_reason,
    )


# A token's prices in time order: when each took effect (block timestamp, or publish
# time for manual prices), then its place in the chain. NULLs (manual prices) count as
# -1 so both databases order them the same way.
PRICE_ORDER = (
    prices.c.at_ms,
    sa.func.coalesce(prices.c.block_number, -1),
    sa.func.coalesce(prices.c.log_index, -1),
    prices.c.id,
)


def latest_price(conn: Connection, token: str) -> PriceRow | None:
    """`token`'s newest row in PRICE_ORDER (the table holds canonical updates only)."""
    row = conn.execute(
        sa.select(prices)
        .where(prices.c.token == token)
        .order_by(*(c.desc() for c in PRICE_ORDER))
        .limit(1)
    ).first()
    return None if row is None else _price(row)


def latest_price_before(
    conn: Connection, token: str, at_ms: int, block_number: int
) -> PriceRow | None:
    """`token`'s newest row that took effect before block `block_number` (at `at_ms`):
    a derived price's leg as of that block."""
    row = conn.execute(
        sa.select(prices)
        .where(
            prices.c.token == token,
            sa.tuple_(prices.c.at_ms, sa.func.coalesce(prices.c.block_number, -1))
            < sa.tuple_(sa.literal(at_ms), sa.literal(block_number)),
        )
        .order_by(*(c.desc() for c in PRICE_ORDER))
        .limit(1)
    ).first()
    return None if row is None else _price(row)


def latest_prices(conn: Connection) -> list[PriceRow]:
    """The newest row of every token, sorted by token."""
    rank = (
        sa.func.row_number()
        .over(partition_by=prices.c.token, order_by=[c.desc() for c in PRICE_ORDER])
        .label("rank")
    )
    ranked = sa.select(prices, rank).subquery()
    rows = conn.execute(sa.select(ranked).where(ranked.c.rank == 1).order_by(ranked.c.token))
    return [_price(row) for row in rows]


def price_history(conn: Connection, token: str, limit: int) -> list[PriceRow]:
    """`token`'s latest `limit` updates, newest first."""
    rows = conn.execute(
        sa.select(prices)
        .where(prices.c.token == token)
        .order_by(*(c.desc() for c in PRICE_ORDER))
        .limit(limit)
    )
    return [_price(row) for row in rows]


def candles(conn: Connection, token: str, interval_ms: int, limit: int) -> list[Candle]:
    """Open, high, low, close and count of `token`'s updates per `interval_ms`, for the
    latest `limit` intervals that have any, newest first. Computed in SQL on both
    databases; high and low compare `price_key` (exact, unlike text or REAL)."""
    bucket = (prices.c.at_ms // interval_ms).label("bucket")
    # a stale row repeats a price already counted: candles count what the source published
    mine = sa.select(prices, bucket).where(prices.c.token == token, ~prices.c.stale).subquery()
    recent = (
        sa.select(mine.c.bucket).distinct().order_by(mine.c.bucket.desc()).limit(limit)
    ).subquery()
    order = (
        mine.c.at_ms,
        sa.func.coalesce(mine.c.block_number, -1),
        sa.func.coalesce(mine.c.log_index, -1),
        mine.c.id,
    )
    part = mine.c.bucket

    def first(column: Any, order_by: Any) -> Any:
        return sa.func.first_value(column).over(partition_by=part, order_by=order_by)

    inner = (
        sa.select(
            mine.c.bucket,
            first(mine.c.price, list(order)).label("open"),
            first(mine.c.price, [c.desc() for c in order]).label("close"),
            first(mine.c.price, mine.c.price_key.desc()).label("high"),
            first(mine.c.price, mine.c.price_key.asc()).label("low"),
            sa.func.count().over(partition_by=part).label("n"),
            sa.func.row_number().over(partition_by=part, order_by=list(order)).label("rank"),
        )
        .where(mine.c.bucket.in_(sa.select(recent.c.bucket)))
        .subquery()
    )
    rows = conn.execute(sa.select(inner).where(inner.c.rank == 1).order_by(inner.c.bucket.desc()))

    def exact(value: Any) -> Decimal:  # text on SQLite, NUMERIC on PostgreSQL
        return Decimal(value)

    return [
        Candle(
            int(r.bucket) * interval_ms,
            exact(r.open),
            exact(r.high),
            exact(r.low),
            exact(r.close),
            int(r.n),
        )
        for r in rows
    ]


def reorg_removing(conn: Connection, chain: int, number: int, block_hash: str) -> ReorgRow | None:
    """`chain`'s most recent reorg whose removed blocks include (`number`, `block_hash`)."""
    candidates = conn.execute(
        sa.select(reorgs)
        .where(
            reorgs.c.chain_id == chain,
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
