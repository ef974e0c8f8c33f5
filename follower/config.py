"""The follower's settings: how it learns of new heads and how far behind it stays."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.config import IndexerSettings, setting


@dataclass(frozen=True)
class FollowerSettings(IndexerSettings):
    """The chain settings it follows by (`ETH_WS_URL`, `CONFIRMATIONS`, `START_BLOCK`,
    `POLL_INTERVAL`) are `IndexerSettings`': each chain of a chains file has its own."""

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
