"""The follower's settings: how it learns of new heads and how far behind it stays."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.config import IndexerSettings, setting


@dataclass(frozen=True)
class FollowerSettings(IndexerSettings):
    ws_url: str | None = setting(
        "ETH_WS_URL", None, "websocket endpoint; the follower then uses `newHeads`"
    )
    confirmations: int = setting("CONFIRMATIONS", 0, "how far behind the head the follower indexes")
    start_block: int | None = setting(
        "START_BLOCK",
        None,
        "where the follower starts on an empty database",
        shown="the head at first start",
    )
    poll_interval: float = setting(
        "POLL_INTERVAL", 1.0, "seconds between `eth_blockNumber` polls (works down to 0.1)"
    )
    follower_lock_ttl: float = setting(
        "FOLLOWER_LOCK_TTL", 5.0, "seconds before a dead follower's lock passes to a standby"
    )
    follower_metrics_port: int = setting(
        "FOLLOWER_METRICS_PORT", 9102, "port of the follower's `/metrics`; 0: none"
    )
    price_silence_warn: int = setting(
        "PRICE_SILENCE_WARN",
        50,
        "blocks a feed's `latestRoundData()` may move with no `AnswerUpdated` stored "
        "before a warning names it; 0: never",
    )
