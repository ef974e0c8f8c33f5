"""The Socket.IO contract in one place (DESIGN.md, Socket.IO): namespace, event names,
refusal messages and the payload builders.

`timestamp` fields are milliseconds since the epoch at push time; `blockTimestamp` is
the chain's seconds; `price` is a JSON number and `priceExact` the exact decimal string.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from indexer.events import BlockIndexed, BlockReorged, PriceUpdated
from indexer.prices import event_from_row
from indexer.queries import BlockRow, PriceRow

NAMESPACE = "/realtime"

# Refusal messages, as the reference gateway words them where it has one.
UNAUTHORIZED = "Unauthorized"
INVALID_TOKEN = "Invalid token"
TOKEN_EXPIRED = "Token expired"
FORBIDDEN = "Forbidden"
RATE_LIMITED = "Rate limit exceeded"
RESUME_WINDOW_EXCEEDED = "Resume window exceeded"
RESUME_FAILED = "Resume unavailable"
INVALID_PAYLOAD = "Invalid payload"
INVALID_CHANNEL = "Invalid channel"
TOO_MANY_ROOMS = "Too many subscriptions"
MESSAGE_TOO_LARGE = "Message too large"
BINARY_REFUSED = "Binary messages are not accepted"
MALFORMED = "Malformed packet"
UNKNOWN_EVENT = "Unknown event"
SLOW_CONSUMER = "Slow consumer: outbound queue full"
BUS_UNAVAILABLE = "Private messages are unavailable"
ALREADY_CONNECTED = "Already connected to this namespace"
SHUTTING_DOWN = "Server shutting down"
INVALID_NAMESPACE = "Invalid namespace"  # the protocol's CONNECT_ERROR for another namespace


def now_ms() -> int:
    return int(time.time() * 1000)


def exception(message: str) -> dict[str, Any]:
    return {"status": "error", "message": message}


def refused(message: str) -> dict[str, Any]:
    return {"success": False, "error": message}


def new_block(event: BlockIndexed) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "number": event.blockNumber,
        "hash": event.blockHash,
        "parentHash": event.parentHash,
        "transactions": event.transactions,
        "blockTimestamp": event.blockTimestamp,
        "timestamp": now_ms(),
    }
    if event.gasUsed is not None:
        payload["gasUsed"] = event.gasUsed
    return payload


def block_fields(row: BlockRow) -> dict[str, Any]:
    """A stored block as `new-block` names its fields (no push `timestamp`)."""
    return {
        "number": row.number,
        "hash": row.hash,
        "parentHash": row.parent_hash,
        "transactions": row.tx_count,
        "blockTimestamp": row.timestamp,
        "gasUsed": row.gas_used,
    }


def new_block_from_row(row: BlockRow) -> dict[str, Any]:
    return {**block_fields(row), "timestamp": now_ms()}


def reorg(event: BlockReorged) -> dict[str, Any]:
    return asdict(event)


def price_update(event: PriceUpdated, snapshot: bool = False) -> dict[str, Any]:
    """The `price-update` payload; `quote` and `updatedAt` (feeds) only when known.
    After a reorg that left a token no price, `price` and `priceExact` are null."""
    payload: dict[str, Any] = {
        "token": event.token,
        "price": _number(event.price) if event.price is not None else None,
        "priceExact": event.price,
        "blockNumber": event.blockNumber,
        "source": event.source,
        "timestamp": now_ms(),
    }
    if event.quote is not None:
        payload["quote"] = event.quote
    if event.updatedAt is not None:
        payload["updatedAt"] = event.updatedAt
    if snapshot:
        payload["snapshot"] = True
    return payload


def _number(exact: str) -> float | None:
    """The price as a JSON number; None if a double cannot hold it (`priceExact` can)."""
    value = float(Decimal(exact))
    return value if math.isfinite(value) else None


def price_event_from_row(row: PriceRow) -> PriceUpdated:
    return event_from_row(row)
