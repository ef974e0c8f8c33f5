"""Price rows and their `price.updated` events: chain prices written in the block's own
transaction, the prices a reorg brings back, and manual prices.

A price row is written with its outbox entry in one transaction. A token's latest price
is its newest canonical row in `indexer.queries.PRICE_ORDER`, so a reorg that removes an
update (its rows go with the block) brings the previous one back, and `restore` tells
the stream which price is valid now.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from indexer import models as m
from indexer import queries
from indexer.blocks import BlockData
from indexer.errors import FatalError
from indexer.events import PriceUpdated
from indexer.exact import DIGITS, plain, significant_digits, sort_key
from indexer.price_decoding import ANSWER_UPDATED, Known, Pricer, Update
from indexer.sources import TOKEN, PriceSources

MANUAL = "manual"
LIMIT = Decimal("1e78")  # a price must stay below 10**78 (uint256 range)
PLACES = 78  # and has at most 78 decimal places: 1e-999999999 would be a 1 GB text


class BadPrice(FatalError):
    """A token name or price that cannot be stored."""


# Chain prices ----------------------------------------------------------------------------


class Priced(NamedTuple):
    """What pricing needs of a block: fetched (`BlockData`) or stored (`stored_answers`)."""

    number: int
    hash: str
    timestamp: int  # chain time, seconds
    logs: Sequence[Mapping[str, Any]]  # ascending log index


def record_block_prices(
    conn: Connection, pricer: Pricer, datas: Sequence[BlockData], chain: int
) -> list[PriceUpdated]:
    """Store every price update in `datas` (ascending heights of `chain`) inside the
    caller's transaction; returns the events to announce: each token's last update per
    block."""
    blocks = [Priced(d.number, d.hash, int(d.block["timestamp"]), d.logs) for d in datas]
    return record_prices(conn, pricer, blocks, chain)


def record_prices(
    conn: Connection, pricer: Pricer, blocks: Sequence[Priced], chain: int, age: bool = True
) -> list[PriceUpdated]:
    """`record_block_prices` for `blocks`; with `age` False, no feed is judged for its
    age (`blocks` hold some logs of blocks already priced: see `stored_answers`)."""
    events: list[PriceUpdated] = []
    now = datetime.now(UTC)
    for data in blocks:
        if age and not pricer.watches(data.logs):
            continue
        number = data.number
        timestamp = data.timestamp
        at_ms = timestamp * 1000

        def latest(token: str, at_ms: int = at_ms, number: int = number) -> Known | None:
            # the database, asked per block: it holds this batch's earlier blocks' rows
            # (written below, block by block) and any row stored before at a height
            # between them, which may be newer than what the batch wrote
            row = queries.latest_price_before(conn, token, at_ms, number)
            return None if row is None else known_of(row)

        def settled(price: Known, number: int = number) -> bool:
            """Whether every block between `price`'s and this one is stored (in this
            transaction too): only then is its age judged, so that a fresh answer in a
            block a worker has not committed yet cannot be missed."""
            if price.block is None or price.block >= number - 1:
                return True
            between = conn.execute(
                sa.select(sa.func.count())
                .select_from(m.blocks)
                .where(
                    m.blocks.c.chain_id == chain,
                    m.blocks.c.number > price.block,
                    m.blocks.c.number < number,
                )
            ).scalar_one()
            return int(between) == number - price.block - 1

        updates = pricer.updates(data.logs, latest, timestamp, age=age, settled=settled)
        if not updates:
            continue
        conn.execute(m.prices.insert(), [_row(u, chain, number, at_ms, now) for u in updates])
        last: dict[str, tuple[int, Update]] = {}
        for position, update in enumerate(updates):
            last[update.token] = (position, update)
        # in chain order: where each token's last update of the block sits
        for _, update in sorted(last.values(), key=lambda item: item[0]):
            token = update.token
            events.append(
                PriceUpdated(
                    chainId=chain,
                    token=token,
                    price=update.price,
                    blockNumber=number,
                    blockTimestamp=timestamp,
                    source=update.source,
                    publishedAt=int(time.time() * 1000),
                    quote=update.quote,
                    updatedAt=update.updated_at,
                    blockHash=data.hash,
                    stale=update.stale_reason is not None,
                    staleReason=update.stale_reason,
                )
            )
    return events


def stored_answers(conn: Connection, chain: int, emitter: str, first: int) -> list[Priced]:
    """`chain`'s stored blocks from `first` up that hold `AnswerUpdated` logs of `emitter`,
    with those logs only: what re-prices a feed from the block its proxy switched to
    `emitter` (indexer.proxies)."""
    found = conn.execute(
        sa.select(
            m.logs.c.block_number,
            m.logs.c.log_index,
            m.logs.c.address,
            m.logs.c.topic0,
            m.logs.c.topic1,
            m.logs.c.data,
            m.blocks.c.hash,
            m.blocks.c.timestamp,
        )
        .join(
            m.blocks,
            sa.and_(
                m.blocks.c.chain_id == m.logs.c.chain_id,
                m.blocks.c.number == m.logs.c.block_number,
            ),
        )
        .where(
            m.logs.c.chain_id == chain,
            m.logs.c.address == emitter,
            m.logs.c.topic0 == ANSWER_UPDATED,
            m.logs.c.block_number >= first,
        )
        .order_by(m.logs.c.block_number, m.logs.c.log_index)
    ).mappings()
    blocks: dict[int, Priced] = {}
    logs: dict[int, list[dict[str, Any]]] = {}
    for row in found:
        number = int(row["block_number"])
        if number not in blocks:
            logs[number] = []
            blocks[number] = Priced(number, str(row["hash"]), int(row["timestamp"]), logs[number])
        names = ("block_number", "log_index", "address", "topic0", "topic1", "data")
        logs[number].append({k: row[k] for k in names})
    return list(blocks.values())


def known_of(row: queries.PriceRow) -> Known:
    """What the decoder needs of a stored row."""
    reason = row.stale_reason if row.stale else None
    return Known(plain(row.price), reason, row.feed_updated_at, row.block_number)


def _row(update: Update, chain: int, number: int, at_ms: int, now: datetime) -> dict[str, Any]:
    price = Decimal(update.price)
    return {
        "chain_id": chain,
        "token": update.token,
        "price": price,
        "block_number": number,
        "log_index": update.log_index,
        "source": update.source,
        "updated_at": now,
        "quote": update.quote,
        "at_ms": at_ms,
        "feed_updated_at": update.updated_at,
        "price_key": sort_key(price),
        "stale": update.stale_reason is not None,
        "stale_reason": update.stale_reason,
    }


# Reorgs ------------------------------------------------------------------------------------


def priced_at(conn: Connection, chain: int, numbers: Sequence[int]) -> dict[str, str]:
    """Tokens with a price row at `chain`'s heights `numbers`, and the source of each
    (before a delete)."""
    if not numbers:
        return {}
    rows = conn.execute(
        sa.select(m.prices.c.token, m.prices.c.source)
        .where(m.prices.c.chain_id == chain, m.prices.c.block_number.in_(list(numbers)))
        .distinct()
    )
    return {token: source for token, source in rows}


def restore(
    conn: Connection, chain: int, removed: dict[str, str], reorg_id: str
) -> list[PriceUpdated]:
    """The price now valid for each token whose rows a reorg of `chain` removed, as
    events that name the reorg; a token left with no price gets an update with `price`
    null."""
    events = []
    now = int(time.time() * 1000)
    for token, source in sorted(removed.items()):
        row = queries.latest_price(conn, token)
        if row is None:
            events.append(
                PriceUpdated(token, None, None, None, source, now, reorgId=reorg_id, chainId=chain)
            )
        else:
            events.append(event_from_row(row, published_at=now, reorg_id=reorg_id))
    return events


def event_from_row(
    row: queries.PriceRow, published_at: int | None = None, reorg_id: str | None = None
) -> PriceUpdated:
    """The `price.updated` a stored row stands for (a snapshot, a restore)."""
    return PriceUpdated(
        chainId=row.chain_id,
        token=row.token,
        price=plain(row.price),
        blockNumber=row.block_number,
        blockTimestamp=row.at_ms // 1000 if row.block_number is not None else None,
        source=row.source,
        publishedAt=published_at if published_at is not None else row.updated_at_ms,
        quote=row.quote,
        updatedAt=row.feed_updated_at,
        reorgId=reorg_id,
        stale=row.stale,
        staleReason=row.stale_reason,
    )


# Manual prices -----------------------------------------------------------------------------


def parse_price(value: str | int | Decimal) -> Decimal:
    """An exact, finite, non-negative decimal below 10**78 with at most 40 significant
    digits and 78 decimal places (what a stored price can hold); floats are refused
    (they are not exact)."""
    if isinstance(value, float):
        raise BadPrice("prices must be given as strings or integers, not floats")
    try:
        price = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):
        raise BadPrice(f"not a decimal number: {_shown(value)}") from None
    if not price.is_finite():
        raise BadPrice(f"a price must be a finite number, got {_shown(value)}")
    if price < 0:
        raise BadPrice(f"a price must not be negative, got {_shown(value)}")
    if price >= LIMIT:
        raise BadPrice(f"a price must be below 10^78, got {_shown(value)}")
    if significant_digits(price) > DIGITS:
        raise BadPrice(f"a price has at most {DIGITS} significant digits, got {_shown(value)}")
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -PLACES:
        raise BadPrice(f"a price has at most {PLACES} decimal places, got {_shown(value)}")
    return price if price else abs(price)  # "-0" is 0


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def check_token(token: str, sources: PriceSources | None = None) -> None:
    """Refuse a malformed token, and one that a chain source publishes (its next update
    would overwrite the manual price)."""
    if not TOKEN.match(token):
        raise BadPrice(f"token must be 1 to 32 of A-Z a-z 0-9 . _ -, got {token!r}")
    owner = sources.owns(token) if sources is not None else None
    if owner is not None:
        raise BadPrice(
            f"token {token} is priced by source {owner.name!r} ({owner.kind}) in {sources}; "
            "a manual price would be overwritten at its next update"
        )


def manual_price(
    token: str,
    price: Decimal | str,
    quote: str | None = None,
    source: str = MANUAL,
    sources: PriceSources | None = None,
) -> tuple[PriceUpdated, dict[str, Any]]:
    """A manual price for `token`, checked: its `price.updated` and its `prices` row
    (`Store.record_manual_price` writes both)."""
    check_token(token, sources)
    if quote is not None and not TOKEN.match(quote):
        raise BadPrice(f"quote must be 1 to 32 of A-Z a-z 0-9 . _ -, got {quote!r}")
    exact = parse_price(price)
    text = plain(exact)
    now = datetime.now(UTC)
    published = int(now.timestamp() * 1000)
    event = PriceUpdated(
        token=token,
        price=text,
        blockNumber=None,
        blockTimestamp=None,
        source=source,
        publishedAt=published,
        quote=quote,
    )
    row = {
        "token": token,
        "price": Decimal(text),
        "block_number": None,
        "log_index": None,
        "source": source,
        "updated_at": now,
        "quote": quote,
        "at_ms": published,
        "feed_updated_at": None,
        "price_key": sort_key(exact),
    }
    return event, row
