"""Stream events as tests build them (blocks of numbered forks, reorgs, prices), and
appending them to the Redis stream `chainpulse:events` as a producer would."""

from __future__ import annotations

import time
from typing import Any

import redis

from indexer.events import BlockIndexed, BlockRef, BlockReorged, PriceUpdated, to_fields


def block_hash(number: int, fork: int = 0) -> str:
    return f"0x{fork:02x}{number:062x}"


def block_event(
    number: int, fork: int = 0, source: str = "head", chain: int | None = None
) -> BlockIndexed:
    return BlockIndexed(
        blockNumber=number,
        blockHash=block_hash(number, fork),
        parentHash=block_hash(number - 1, fork),
        blockTimestamp=1_700_000_000 + number,
        transactions=number % 7,
        source=source,  # type: ignore[arg-type]
        chainId=chain,
    )


def reorg_event(ancestor: int, depth: int, old_fork: int = 0, new_fork: int = 1) -> BlockReorged:
    heights = range(ancestor + 1, ancestor + depth + 1)
    return BlockReorged(
        depth=depth,
        commonAncestor=BlockRef(ancestor, block_hash(ancestor, old_fork)),
        removed=[BlockRef(h, block_hash(h, old_fork)) for h in heights],
        added=[BlockRef(h, block_hash(h, new_fork)) for h in heights],
    )


def price_event(token: str, price: str, number: int | None = None) -> PriceUpdated:
    return PriceUpdated(
        token=token,
        price=price,
        blockNumber=number,
        blockTimestamp=None if number is None else 1_700_000_000 + number,
        source="test",
        publishedAt=int(time.time() * 1000),
    )


class Stream:
    def __init__(self, redis_url: str, key: str = "chainpulse:events") -> None:
        self.redis = redis.Redis.from_url(redis_url)
        self.key = key

    def append(self, *events: Any) -> None:
        for event in events:
            self.redis.xadd(self.key, to_fields(event))
