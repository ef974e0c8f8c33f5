"""Events on the Redis stream `chainpulse:events` (contract: docs/events.md).

Each stream entry has the fields `type`, `id` and `data` (JSON). A repeated entry
carries the same `id`, so consumers can drop it. Events are named in the past tense.

Every id is at most MAX_ID_LENGTH characters, whatever the event holds: the outbox's
`event_id` column is wider still, with room for a chain id in front.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeAlias

from indexer import json_text

BlockSource = Literal["head", "backfill"]

MAX_ID_LENGTH = 200  # characters; `outbox.event_id` holds 255


def chain_part(chain_id: int | None) -> str:
    """A chain id as ids write it: `-` for none (a manual price, an older producer)."""
    return "-" if chain_id is None else str(chain_id)


def digest(*parts: str) -> str:
    """32 hex digits of SHA-256 over `parts`: a fixed-length stand-in for long id parts."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class BlockRef:
    number: int
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "hash": self.hash}


@dataclass(frozen=True)
class BlockIndexed:
    blockNumber: int
    blockHash: str
    parentHash: str
    blockTimestamp: int  # chain time, seconds
    transactions: int
    source: BlockSource
    gasUsed: int | None = None  # optional: producers before it was added omit it
    chainId: int | None = None  # None only from a producer before chains: the primary
    # the contracts file's events decoded in this block's transaction (docs/contracts.md);
    # omitted when none
    contractEvents: list[dict[str, Any]] | None = None

    type = "block.indexed"

    @property
    def id(self) -> str:
        return f"{self.type}:{chain_part(self.chainId)}:{self.blockNumber}:{self.blockHash}"


@dataclass(frozen=True)
class BlockReorged:
    depth: int  # number of removed blocks
    commonAncestor: BlockRef
    removed: list[BlockRef] = field(default_factory=list)
    added: list[BlockRef] = field(default_factory=list)
    chainId: int | None = None  # None only from a producer before chains: the primary

    type = "block.reorged"

    @property
    def id(self) -> str:
        tip = self.removed[-1].hash if self.removed else self.commonAncestor.hash
        new = self.added[-1].hash if self.added else ""
        return f"{self.type}:{chain_part(self.chainId)}:{self.commonAncestor.number}:{tip}:{new}"


@dataclass(frozen=True)
class BlockFinalized:
    """A chain's finality marks moved (`indexer.finality`): `number`/`hash` is its
    finalized block, `safe` its safe block."""

    number: int
    hash: str
    safe: BlockRef
    chainId: int | None = None

    type = "block.finalized"

    @property
    def id(self) -> str:
        return (
            f"{self.type}:{chain_part(self.chainId)}:{self.number}:{self.hash}:"
            f"{self.safe.number}:{self.safe.hash}"
        )


@dataclass(frozen=True)
class PriceUpdated:
    token: str
    price: str | None  # exact decimal string; null only when a reorg left no price
    blockNumber: int | None  # null for manual prices
    blockTimestamp: int | None
    source: str
    publishedAt: int  # milliseconds since the epoch
    quote: str | None = None  # what the price is expressed in
    updatedAt: int | None = None  # a feed's round time, seconds
    reorgId: str | None = None  # set when a reorg republishes the price now valid
    blockHash: str | None = None  # the block of a chain price (readers may drop an orphan's)
    stale: bool = False  # the source would not publish now: `price` is the last good one
    staleReason: str | None = None  # low-liquidity, no-reserves, feed-age or stale-leg
    chainId: int | None = None  # the source's chain; None for a manual price

    type = "price.updated"

    @property
    def id(self) -> str:
        """`price.updated:<chainId>:<token>:<where>:<digest>`: where is the block,
        `manual:<ms>` or
        `reorg`; the digest stands for the price (a price has no length bound: a derived
        price multiplies its legs), with the block's hash or the reorg's id, and with
        the stale reason when stale (a stale update repeats a price already published)."""
        price = str(self.price) if not self.stale else f"{self.price}\n{self.staleReason}"
        if self.reorgId is not None:
            where, key = "reorg", digest(self.reorgId, price)
        elif self.blockNumber is None:
            where, key = f"manual:{self.publishedAt}", digest(price)
        else:
            where, key = str(self.blockNumber), digest(self.blockHash or "", price)
        return f"{self.type}:{chain_part(self.chainId)}:{self.token}:{where}:{key}"


Event: TypeAlias = BlockIndexed | BlockReorged | BlockFinalized | PriceUpdated

_TYPES: dict[str, type[Event]] = {
    BlockIndexed.type: BlockIndexed,
    BlockReorged.type: BlockReorged,
    BlockFinalized.type: BlockFinalized,
    PriceUpdated.type: PriceUpdated,
}


@dataclass(frozen=True)
class Entry:
    """An event as it travels: the stream entry's fields, and the outbox row's too."""

    type: str
    id: str
    data: str  # JSON

    def fields(self) -> dict[str, str]:
        return {"type": self.type, "id": self.id, "data": self.data}


@dataclass(frozen=True)
class Pending:
    """An outbox row: an entry waiting for the stream. `delivery_id` is random per row,
    so the append can tell a row it has appended already from a repeated event."""

    outbox_id: int
    delivery_id: str
    entry: Entry


def encode(event: Event) -> Entry:
    """The one serialisation of events, for the outbox and the stream alike."""
    if isinstance(event, BlockIndexed):
        # shallow: its contract events are plain JSON data already, and `asdict` would
        # copy each of them deeply (milliseconds for a block of a busy contract)
        data = {name: getattr(event, name) for name in _NAMES}
        if data["contractEvents"] is None:
            del data["contractEvents"]  # optional, and most blocks have none
    else:
        data = asdict(event)
    return Entry(event.type, event.id, json_text.dumps(data))


def to_fields(event: Event) -> dict[str, str]:
    """The stream entry for `event`: `type`, `id` and JSON `data`."""
    return encode(event).fields()


def from_fields(entry: dict[str, str] | dict[bytes, bytes]) -> Event:
    """Parse a stream entry; raises ValueError on an unknown type or a malformed entry."""
    decoded = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in entry.items()
    }
    kind = decoded.get("type")
    cls = _TYPES.get(kind or "")
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}")
    data: dict[str, Any] = json_text.loads(decoded["data"])
    if cls is BlockReorged:
        return BlockReorged(
            depth=int(data["depth"]),
            commonAncestor=BlockRef(**data["commonAncestor"]),
            removed=[BlockRef(**ref) for ref in data.get("removed", [])],
            added=[BlockRef(**ref) for ref in data.get("added", [])],
            chainId=data.get("chainId"),
        )
    if cls is BlockFinalized:
        return BlockFinalized(
            number=int(data["number"]),
            hash=str(data["hash"]),
            safe=BlockRef(**data["safe"]),
            chainId=data.get("chainId"),
        )
    # Fields this version does not know are ignored: a newer producer may add some
    # during a rolling deploy, and dropping its events would lose them.
    known = _FIELDS[cls]
    return cls(**{k: v for k, v in data.items() if k in known})


_FIELDS: dict[type[Event], frozenset[str]] = {
    cls: frozenset(f.name for f in fields(cls)) for cls in _TYPES.values()
}

_NAMES = tuple(f.name for f in fields(BlockIndexed))
