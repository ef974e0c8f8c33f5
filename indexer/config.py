"""Settings: read from the environment (and a `.env` file) once, into one frozen object.

Library code never reads `os.environ`; entry points call `Settings.from_env()` and pass
the result down. Tests build `Settings(...)` with their own values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from indexer.errors import ConfigError

STREAM_KEY = "chainpulse:events"


def mask_url(url: str) -> str:
    """The URL with any password replaced by `***`, fit for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@dataclass(frozen=True)
class Settings:
    # Chain
    rpc_urls: tuple[str, ...] = ("http://127.0.0.1:8545",)
    ws_url: str | None = None
    rpc_timeout: float = 10.0  # seconds per JSON-RPC request
    confirmations: int = 0
    start_block: int | None = None
    price_sources: str | None = None
    # Storage and bus
    database_url: str = "sqlite:///chainpulse.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    stream_key: str = STREAM_KEY
    stream_maxlen: int = 100_000  # entries kept in the event stream (approximate trim)
    # Workers
    task_max_retries: int = 8
    retry_backoff_max: int = 30  # seconds; must stay below visibility_timeout
    visibility_timeout: int = 60  # seconds before an unacknowledged job is delivered again
    # Blocks per job when a backfill is far behind the head: 25 blocks are 50 calls in
    # one JSON-RPC batch, below the 100 that hosted nodes commonly allow.
    backfill_batch: int = 25
    # Prefork processes per worker; None: one more than the CPU count, since a job spends
    # most of its time waiting on the node
    worker_concurrency: int | None = None
    # Follower
    poll_interval: float = 1.0  # seconds between eth_blockNumber polls
    max_reorg_depth: int = 64  # blocks
    follower_lock_ttl: float = 5.0  # seconds
    # Realtime
    port: int = 3000
    cors_origins: tuple[str, ...] = ("*",)
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    require_auth: bool = False
    rate_limit: int = 100  # client messages per window
    rate_window: float = 60.0  # seconds
    max_rooms: int = 128  # rooms per connection
    max_message_bytes: int = 65_536
    ping_interval: float = 10.0  # seconds
    ping_timeout: float = 5.0  # seconds
    outbound_queue_max: int = 1_000  # packets queued per client before it is dropped
    resume_window: int = 1_000  # blocks a reconnecting client may catch up on
    push_window: int = 64  # blocks behind the head that are still pushed as new-block
    compression: bool = False  # per-message deflate on WebSocket frames
    block_gap_timeout: float = 10.0  # seconds a missing block may hold back later new-blocks
    canary_interval: float = 5.0  # seconds between pub/sub canary messages (python-socketio #1581)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, dotenv: bool = True) -> Settings:
        """Settings from `env` (default: the process environment plus `./.env`)."""
        if env is None:
            if dotenv:
                from dotenv import dotenv_values

                file_values = {k: v for k, v in dotenv_values(".env").items() if v is not None}
                env = {**file_values, **os.environ}
            else:
                env = dict(os.environ)
        return cls(**_parse(env))

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


_INT = {
    "CONFIRMATIONS": "confirmations",
    "START_BLOCK": "start_block",
    "PORT": "port",
    "STREAM_MAXLEN": "stream_maxlen",
    "TASK_MAX_RETRIES": "task_max_retries",
    "RETRY_BACKOFF_MAX": "retry_backoff_max",
    "VISIBILITY_TIMEOUT": "visibility_timeout",
    "BACKFILL_BATCH": "backfill_batch",
    "WORKER_CONCURRENCY": "worker_concurrency",
    "MAX_REORG_DEPTH": "max_reorg_depth",
    "RATE_LIMIT": "rate_limit",
    "MAX_ROOMS": "max_rooms",
    "MAX_MESSAGE_BYTES": "max_message_bytes",
    "OUTBOUND_QUEUE_MAX": "outbound_queue_max",
    "RESUME_WINDOW": "resume_window",
    "PUSH_WINDOW": "push_window",
}
_FLOAT = {
    "ETH_RPC_TIMEOUT": "rpc_timeout",
    "POLL_INTERVAL": "poll_interval",
    "FOLLOWER_LOCK_TTL": "follower_lock_ttl",
    "RATE_WINDOW": "rate_window",
    "PING_INTERVAL": "ping_interval",
    "PING_TIMEOUT": "ping_timeout",
    "BLOCK_GAP_TIMEOUT": "block_gap_timeout",
    "PUBSUB_CANARY_INTERVAL": "canary_interval",
}
_STR = {
    "ETH_WS_URL": "ws_url",
    "DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "JWT_SECRET": "jwt_secret",
    "JWT_PUBLIC_KEY": "jwt_public_key",
    "JWT_AUDIENCE": "jwt_audience",
    "JWT_ISSUER": "jwt_issuer",
    "PRICE_SOURCES": "price_sources",
}
_BOOL = {"REQUIRE_AUTH": "require_auth", "WS_COMPRESSION": "compression"}
_LIST = {"ETH_RPC_URL": "rpc_urls", "CORS_ORIGIN": "cors_origins"}

# Lower bounds: a value below these is a configuration mistake, not a choice.
_MINIMUM = {
    "confirmations": 0,
    "start_block": 0,
    "port": 0,
    "stream_maxlen": 1,
    "task_max_retries": 0,
    "retry_backoff_max": 1,
    "visibility_timeout": 1,
    "backfill_batch": 1,
    "worker_concurrency": 1,
    "max_reorg_depth": 1,
    "rate_limit": 1,
    "max_rooms": 1,
    "max_message_bytes": 256,
    "outbound_queue_max": 1,
    "resume_window": 0,
    "push_window": 1,
}


def _parse(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, attr in _INT.items():
        raw = env.get(name, "").strip()
        if raw:
            try:
                values[attr] = int(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
            if values[attr] < _MINIMUM.get(attr, 0):
                raise ConfigError(f"{name} must be at least {_MINIMUM.get(attr, 0)}, got {raw}")
    for name, attr in _FLOAT.items():
        raw = env.get(name, "").strip()
        if raw:
            try:
                values[attr] = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
            if values[attr] <= 0:
                raise ConfigError(f"{name} must be positive, got {raw}")
    for name, attr in _STR.items():
        raw = env.get(name, "").strip()
        if raw:
            values[attr] = raw.replace("\\n", "\n") if name == "JWT_PUBLIC_KEY" else raw
    for name, attr in _BOOL.items():
        raw = env.get(name, "").strip().lower()
        if raw:
            if raw not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ConfigError(f"{name} must be true or false, got {raw!r}")
            values[attr] = raw in ("1", "true", "yes", "on")
    for name, attr in _LIST.items():
        raw = env.get(name, "").strip()
        if raw:
            items = tuple(part.strip() for part in raw.split(",") if part.strip())
            if not items:
                raise ConfigError(f"{name} is set but lists nothing")
            values[attr] = items
    if values.get("retry_backoff_max", 30) >= values.get("visibility_timeout", 60):
        raise ConfigError("RETRY_BACKOFF_MAX must stay below VISIBILITY_TIMEOUT")
    return values
