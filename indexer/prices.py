"""Token prices: validation and manual price updates.

A price row is written with its `price.updated` outbox entry in one transaction.
The latest price of a token is its newest canonical row, so a reorg that removes an
on-chain update (its rows go with the block) brings the previous price back.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from indexer import models as m
from indexer.errors import FatalError
from indexer.events import PriceUpdated
from indexer.store import Store

TOKEN = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


class BadPrice(FatalError):
    """A token name or price that cannot be stored."""


def parse_price(value: str | int | Decimal) -> Decimal:
    """An exact, finite, non-negative decimal; floats are refused (they are not exact)."""
    if isinstance(value, float):
        raise BadPrice("prices must be given as strings or integers, not floats")
    try:
        price = Decimal(value)
    except (InvalidOperation, ValueError):
        raise BadPrice(f"not a decimal price: {value!r}") from None
    if not price.is_finite() or price < 0:
        raise BadPrice(f"a price must be a finite, non-negative decimal, got {value!r}")
    return price


def record_manual_price(
    store: Store, token: str, price: Decimal | str, source: str
) -> PriceUpdated:
    """Store a manual price for `token` and queue its `price.updated` event."""
    if not TOKEN.match(token):
        raise BadPrice(f"token must be 1 to 32 of A-Z a-z 0-9 . _ -, got {token!r}")
    exact = parse_price(price)
    event = PriceUpdated(
        token=token,
        price=format(exact, "f"),
        blockNumber=None,
        blockTimestamp=None,
        source=source,
        publishedAt=int(time.time() * 1000),
    )
    with store.writing() as conn:
        conn.execute(
            m.prices.insert().values(
                token=token,
                price=exact,
                block_number=None,
                log_index=None,
                source=source,
                updated_at=datetime.now(UTC),
            )
        )
        store.add_to_outbox(conn, event)
    return event
