"""The Socket.IO contract in one place (docs/protocol.md): namespace, refusal messages,
and each payload, typed and built here once.

`timestamp` fields are milliseconds since the epoch at push time; `blockTimestamp` is
the chain's seconds; `price` is a JSON number and `priceExact` the exact decimal string.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal, NotRequired, TypedDict

from indexer.events import BlockFinalized, BlockIndexed, BlockRef, BlockReorged, PriceUpdated
from indexer.price_store import event_from_row
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
INVALID_FILTER = "Invalid filter"
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


# Payloads: each built in one place, below. Optional fields are NotRequired: readers
# ignore what they do not know, and a producer sends them only when it has them.


class Exception_(TypedDict):
    status: Literal["error"]
    message: str
    channel: NotRequired[str]  # the subscription it is about


class Refused(TypedDict):
    success: Literal[False]
    error: str


class Connected(TypedDict):
    clientId: str
    serverTime: int  # ms


class Pong(TypedDict):
    timestamp: int  # ms


PrivateMessage = TypedDict("PrivateMessage", {"from": str, "message": str, "timestamp": int})


class BlockFields(TypedDict):
    """A block as `new-block` and `/api/blocks` name its fields."""

    chainId: int
    number: int
    hash: str
    parentHash: str
    transactions: int
    blockTimestamp: int  # the chain's seconds
    gasUsed: NotRequired[int]


class NewBlock(BlockFields):
    timestamp: int  # ms, at push time


class Ref(TypedDict):
    number: int
    hash: str


class Reorg(TypedDict):
    chainId: int
    depth: int
    commonAncestor: Ref
    removed: list[Ref]
    added: list[Ref]


class Finalized(TypedDict):
    chainId: int
    number: int  # the chain's finalized block
    hash: str
    safe: Ref  # its safe block


class ContractEvent(TypedDict):
    chainId: int
    contract: str
    event: str  # its name, or its signature where the contract overloads the name
    address: str
    blockNumber: int
    blockHash: str
    logIndex: int
    transactionHash: str
    blockTimestamp: int  # the chain's seconds
    args: dict[str, Any]  # exact values: integers as decimal strings (docs/contracts.md)
    subscriptions: list[str]  # the subscription(s) it answers, by the ids the acks gave
    timestamp: int  # ms, at push time


class PriceUpdate(TypedDict):
    chainId: int | None  # the source's chain; null for a manual price
    token: str
    price: float | None  # a JSON number; null when a double cannot hold it, or no price
    priceExact: str | None  # the exact decimal; null when a reorg left the token no price
    blockNumber: int | None  # null for manual prices
    source: str
    timestamp: int  # ms, at push time
    stale: bool  # the source would not publish now: `price` is the last good one
    staleReason: str | None  # low-liquidity, no-reserves, feed-age, stale-leg; null if fresh
    quote: NotRequired[str]
    updatedAt: NotRequired[int]  # a feed's round time, seconds
    snapshot: NotRequired[Literal[True]]  # the first after a subscribe


def exception(message: str, channel: str | None = None) -> Exception_:
    """`exception`; `channel` names the subscription it is about."""
    error: Exception_ = {"status": "error", "message": message}
    if channel is not None:
        error["channel"] = channel
    return error


def refused(message: str) -> Refused:
    return {"success": False, "error": message}


def connected(sid: str) -> Connected:
    return {"clientId": sid, "serverTime": now_ms()}


def pong() -> Pong:
    return {"timestamp": now_ms()}


def private_message(sender: str, message: str) -> PrivateMessage:
    return {"from": sender, "message": message, "timestamp": now_ms()}


def indexed_from_row(row: BlockRow) -> BlockIndexed:
    """A stored block as the `block.indexed` that announced it."""
    return BlockIndexed(
        chainId=row.chain_id,
        blockNumber=row.number,
        blockHash=row.hash,
        parentHash=row.parent_hash,
        blockTimestamp=row.timestamp,
        transactions=row.tx_count,
        source="head",
        gasUsed=row.gas_used,
    )


def contract_event(chain: int, event: Mapping[str, Any], subscription: str) -> ContractEvent:
    """`contract-event`, from an event as `block.indexed` carries it (or a stored row,
    through `indexer.event_store.stream_event`)."""
    return {
        "chainId": chain,
        "contract": event["contract"],
        "event": event["event"],
        "address": event["address"],
        "blockNumber": event["blockNumber"],
        "blockHash": event["blockHash"],
        "logIndex": event["logIndex"],
        "transactionHash": event["transactionHash"],
        "blockTimestamp": event["blockTimestamp"],
        "args": event["args"],
        "subscriptions": [subscription],
        "timestamp": now_ms(),
    }


def block_fields(event: BlockIndexed) -> BlockFields:
    fields: BlockFields = {
        "chainId": _chain(event.chainId),
        "number": event.blockNumber,
        "hash": event.blockHash,
        "parentHash": event.parentHash,
        "transactions": event.transactions,
        "blockTimestamp": event.blockTimestamp,
    }
    if event.gasUsed is not None:
        fields["gasUsed"] = event.gasUsed
    return fields


def new_block(event: BlockIndexed) -> NewBlock:
    """`new-block`, from the stream's event or (through `indexed_from_row`) a stored row;
    `gasUsed` when the producer sent it."""
    return {**block_fields(event), "timestamp": now_ms()}


def reorg(event: BlockReorged) -> Reorg:
    return {
        "chainId": _chain(event.chainId),
        "depth": event.depth,
        "commonAncestor": _ref(event.commonAncestor),
        "removed": [_ref(r) for r in event.removed],
        "added": [_ref(r) for r in event.added],
    }


def finalized(event: BlockFinalized) -> Finalized:
    return {
        "chainId": _chain(event.chainId),
        "number": event.number,
        "hash": event.hash,
        "safe": _ref(event.safe),
    }


def _chain(chain_id: int | None) -> int:
    """An event's chain. Every producer sends it but those of the release before chains,
    which indexed the primary only: the feed fills the primary's id in for those."""
    return chain_id if chain_id is not None else 0


def _ref(ref: BlockRef) -> Ref:
    return Ref(number=ref.number, hash=ref.hash)


def price_update(event: PriceUpdated, snapshot: bool = False) -> PriceUpdate:
    """The `price-update` payload; `quote` and `updatedAt` (feeds) only when known.
    After a reorg that left a token no price, `price` and `priceExact` are null."""
    payload: PriceUpdate = {
        "chainId": event.chainId,
        "token": event.token,
        "price": _number(event.price) if event.price is not None else None,
        "priceExact": event.price,
        "blockNumber": event.blockNumber,
        "source": event.source,
        "timestamp": now_ms(),
        "stale": event.stale,
        "staleReason": event.staleReason,
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
