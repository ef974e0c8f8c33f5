"""The realtime server's settings: its port, auth, limits and push behaviour."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.config import IndexerSettings, setting


def _pem(raw: str) -> str:
    return raw.replace("\\n", "\n")  # a PEM key on one line, with `\n` escapes


@dataclass(frozen=True)
class RealtimeSettings(IndexerSettings):
    port: int = setting("PORT", 3000, "realtime server port (Socket.IO and HTTP)")
    cors_origins: tuple[str, ...] = setting(
        "CORS_ORIGIN", ("*",), "allowed origins, comma-separated"
    )
    jwt_secret: str | None = setting("JWT_SECRET", None, "HS256 secret (32 bytes or more)")
    jwt_public_key: str | None = setting(
        "JWT_PUBLIC_KEY",
        None,
        "PEM public key for RS256/ES256 (`\\n` escapes allowed)",
        convert=_pem,
    )
    jwt_audience: str | None = setting("JWT_AUDIENCE", None, "checked when set")
    jwt_issuer: str | None = setting("JWT_ISSUER", None, "checked when set")
    require_auth: bool = setting("REQUIRE_AUTH", False, "refuse connections without a valid token")
    rate_limit: int = setting(
        "RATE_LIMIT", 100, "client messages per window per connection", minimum=1
    )
    rate_window: float = setting("RATE_WINDOW", 60.0, "seconds; the rate limit's sliding window")
    max_rooms: int = setting("MAX_ROOMS", 128, "rooms one connection may join", minimum=1)
    max_message_bytes: int = setting(
        "MAX_MESSAGE_BYTES", 65_536, "largest inbound Socket.IO message", minimum=256
    )
    ping_interval: float = setting("PING_INTERVAL", 10.0, "seconds between Engine.IO pings")
    ping_timeout: float = setting("PING_TIMEOUT", 5.0, "seconds a client may take to answer a ping")
    outbound_queue_max: int = setting(
        "OUTBOUND_QUEUE_MAX",
        1_000,
        "packets queued for one client before it is dropped as too slow",
        minimum=1,
    )
    outbound_bytes_max: int = setting(
        "OUTBOUND_BYTES_MAX",
        1_048_576,
        "bytes queued or held for one client before it is dropped as too slow",
        minimum=1_024,
    )
    connect_timeout: float = setting(
        "CONNECT_TIMEOUT",
        45.0,
        "seconds a new session may take to send its Socket.IO CONNECT before it is closed; "
        "0: never",
        minimum=0,
    )
    upgrade_timeout: float = setting(
        "UPGRADE_TIMEOUT",
        10.0,
        "seconds an upgrade from long-polling may take to finish its probe and UPGRADE",
    )
    resume_window: int = setting(
        "RESUME_WINDOW", 1_000, "blocks a reconnecting client may catch up on with `lastBlock`"
    )
    push_window: int = setting(
        "PUSH_WINDOW",
        64,
        "blocks behind the newest that are still pushed as `new-block`",
        minimum=1,
    )
    compression: bool = setting("WS_COMPRESSION", False, "per-message deflate on WebSocket frames")
    block_gap_timeout: float = setting(
        "BLOCK_GAP_TIMEOUT",
        10.0,
        "seconds a missing block may hold back later `new-block`s before it is skipped",
    )
    canary_interval: float = setting(
        "PUBSUB_CANARY_INTERVAL",
        5.0,
        "seconds between the pub/sub canary messages each server sends itself",
    )
    indexing_stall_timeout: float = setting(
        "INDEXING_STALL_TIMEOUT",
        60.0,
        "seconds the highest indexed block may stay put while the node is ahead before "
        "`/readyz` reports indexing as stalled",
    )
    ready_requires_indexing: bool = setting(
        "READY_REQUIRES_INDEXING",
        False,
        "stalled indexing fails `/readyz` (503); off, it is reported in the body only",
    )
    max_connections_per_address: int = setting(
        "MAX_CONNECTIONS_PER_ADDRESS",
        0,
        "open connections one client address may hold; 0: no cap (behind a load balancer "
        "every client may share one address)",
    )
    connect_rate: float = setting(
        "CONNECT_RATE",
        0.0,
        "connects per second one client address may make (over 10 s); 0: no limit",
        minimum=0,
    )
    trusted_proxy_header: str | None = setting(
        "TRUSTED_PROXY_HEADER",
        None,
        "header whose last entry is the client's address (e.g. `X-Forwarded-For` behind "
        "a proxy that appends it); unset: the peer's address",
    )
    shutdown_timeout: float = setting(
        "SHUTDOWN_TIMEOUT",
        4.0,
        "seconds a stopping server waits for its clients to leave before it exits "
        "(below a process manager's kill timeout: honcho's is 5)",
    )
    http_timeout: float = setting(
        "HTTP_TIMEOUT",
        30.0,
        "seconds an HTTP request may take to arrive: a half-sent one is closed after it "
        "(WebSockets are watched by their heartbeats instead)",
    )
