"""HTTP on the Socket.IO port: health, readiness, metrics, the read API and the demo.

`/healthz` answers while the process serves. `/readyz` is 200 only when Redis and the
database answer, the pub/sub canary is heard and indexing is not halted by a reorg deeper
than MAX_REORG_DEPTH (JSON body says which part failed).
`/api/*` are rate limited per client address (the Socket.IO limits) and send the same
CORS headers as the Socket.IO endpoint.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import redis
from sqlalchemy.engine import Connection

from indexer import queries
from indexer.exact import plain
from indexer.reorg import Halt, halt_in
from indexer.seen_head import HEAD_KEY, read_head
from indexer.sources import TOKEN
from realtime import assets, protocol
from realtime.config import RealtimeSettings
from realtime.contract_reads import ContractReads
from realtime.indexing import IndexingProgress, IndexingWatch
from realtime.metrics import Metrics, PubSubHealth
from realtime.push.stream import StreamReader
from realtime.ratelimit import SlidingWindowLimiter
from realtime.reads import Database
from realtime.transport.admission import client_address

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
MAX_LIMIT = 100
MAX_HEIGHT = 2**63 - 1  # the largest BIGINT
MAX_PRICE_LIMIT = 1000  # updates or candles per /api/prices/<TOKEN> answer
INTERVALS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}  # candle widths, ms


class HttpApp:
    def __init__(
        self,
        settings: RealtimeSettings,
        db: Database,
        metrics: Metrics,
        pubsub: PubSubHealth | None,
        stream: StreamReader | None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.metrics = metrics
        self.pubsub = pubsub
        self.stream = stream
        self.origins = settings.cors_origins
        self.limiter = SlidingWindowLimiter(settings.rate_limit, settings.rate_window)
        self._redis = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        self._last_prune = time.monotonic()
        self.views = settings.chains()  # the primary first
        # per chain: the stall of each is its own
        self.watches = {
            v.chain_name: IndexingWatch(settings.indexing_stall_timeout) for v in self.views
        }
        self.assets = assets.load()
        self.contract_reads = ContractReads(
            db,
            {
                contract.name: (contract, functools.partial(self._id, view))
                for view in self.views
                for contract in view.contracts
            },
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        cors = self._cors(environ.get("HTTP_ORIGIN"))
        if method == "OPTIONS":
            start_response("204 No Content", [*cors, ("Access-Control-Allow-Methods", "GET")])
            return [b""]
        if method not in ("GET", "HEAD"):
            return self._json(start_response, 405, {"error": "method not allowed"}, cors)
        try:
            if path == "/healthz":
                return self._json(start_response, 200, {"status": "ok"}, cors)
            if path == "/readyz":
                return self._ready(start_response, cors)
            if path == "/metrics":
                with contextlib.suppress(Exception):  # a failed reading leaves the gauges
                    primary = self.views[0]
                    self._progress(
                        primary, self.db.read(queries.latest_block_number, self._id(primary))
                    )
                body = self.metrics.render()
                return self._send(start_response, 200, body, "text/plain; version=0.0.4", cors)
            if path == "/" or path.startswith("/static/"):
                asset = self.assets.get("index.html" if path == "/" else path[len("/static/") :])
                if asset is None:
                    return self._json(start_response, 404, {"error": "not found"}, cors)
                return self._send(start_response, 200, asset.body, asset.content_type, cors)
            if path.startswith("/api/"):
                if not self._allow(environ):
                    self.metrics.refuse("http rate limit")
                    return self._json(start_response, 429, {"error": "Rate limit exceeded"}, cors)
                return self._api(path, environ, start_response, cors)
        except Exception:
            log.exception("HTTP %s failed", path)
            return self._json(start_response, 503, {"error": "unavailable"}, cors)
        return self._json(start_response, 404, {"error": "not found"}, cors)

    def _api(
        self, path: str, environ: dict[str, Any], start_response: StartResponse, cors: list[Any]
    ) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/api/chains":
            return self._json(start_response, 200, [self._chain(v) for v in self.views], cors)
        if path in ("/api/blocks", "/api/status") or path.startswith("/api/blocks/"):
            view = self._view(query.get("chain", [None])[0])
            if isinstance(view, tuple):
                status_code, problem = view
                return self._json(start_response, status_code, {"error": problem}, cors)
            return self._of_chain(path, query, view, start_response, cors)
        if path == "/api/contracts":
            status, body = self.contract_reads.listing()
            return self._json(start_response, status, body, cors)
        if path.startswith("/api/events/"):
            status, body = self.contract_reads.events(path.removeprefix("/api/events/"), query)
            return self._json(start_response, status, body, cors)
        if path.startswith("/api/contracts/") and path.endswith("/addresses"):
            name = path.removeprefix("/api/contracts/").removesuffix("/addresses")
            status, body = self.contract_reads.addresses(name, query)
            return self._json(start_response, status, body, cors)
        if path == "/api/prices":
            prices = self.db.read(queries.latest_prices)
            return self._json(start_response, 200, [_price(p) for p in prices], cors)
        if path.startswith("/api/prices/"):
            return self._prices(path.removeprefix("/api/prices/"), environ, start_response, cors)
        return self._json(start_response, 404, {"error": "not found"}, cors)

    def _of_chain(
        self,
        path: str,
        query: dict[str, list[str]],
        view: RealtimeSettings,
        start_response: StartResponse,
        cors: list[Any],
    ) -> Iterable[bytes]:
        """`/api/blocks`, `/api/blocks/<n>` and `/api/status` of one chain."""
        chain = self._id(view)
        if path == "/api/blocks":
            limit = _whole(query.get("limit", ["20"])[0])
            if limit is None or not 1 <= limit <= MAX_LIMIT:
                return self._json(
                    start_response, 400, {"error": f"limit must be 1..{MAX_LIMIT}"}, cors
                )
            rows = self.db.read(queries.latest_blocks, chain, limit)
            return self._json(start_response, 200, [_block(r) for r in rows], cors)
        if path.startswith("/api/blocks/"):
            number = _whole(path.removeprefix("/api/blocks/"))
            if number is None:
                return self._json(start_response, 400, {"error": "bad block number"}, cors)
            # heights are BIGINT: one above that range is no block, not a driver error
            row = (
                self.db.read(queries.block_by_number, chain, number)
                if number <= MAX_HEIGHT
                else None
            )
            if row is None:
                return self._json(start_response, 404, {"error": "block not found"}, cors)
            return self._json(start_response, 200, _block(row), cors)
        if path == "/api/status":
            progress = self._progress(view, self.db.read(queries.latest_block_number, chain))
            status = {
                "chainId": chain or None,
                "indexedBlock": progress.indexed,
                "nodeHead": progress.head,
                "lag": progress.lag,
                "indexing": progress.describe(),
            }
            return self._json(start_response, 200, status, cors)
        return self._json(start_response, 404, {"error": "not found"}, cors)

    def _id(self, view: RealtimeSettings) -> int:
        """A chain's id: the file's, or (one chain) the database's primary (0 before
        any is bound: no rows)."""
        return view.chain_id if view.chain_id is not None else self.db.primary()

    def _view(self, raw: str | None) -> RealtimeSettings | tuple[int, str]:
        """The chain `?chain=<id>` names (default: the primary), or the answer to give."""
        if raw is None:
            return self.views[0]
        chain_id = _whole(raw)
        if chain_id is None or chain_id == 0:
            return 400, "chain must be a chain id (a whole number)"
        for view in self.views:
            if self._id(view) == chain_id:
                return view
        return 404, f"no chain {chain_id}: this deployment indexes {self._ids()}"

    def _ids(self) -> str:
        return ", ".join(str(self._id(v)) for v in self.views)

    def _chain(self, view: RealtimeSettings) -> dict[str, Any]:
        """A chain as `/api/chains` lists it."""
        chain = self._id(view)
        progress = self._progress(view, self.db.read(queries.latest_block_number, chain))
        marks = self.db.read(queries.finality_marks, chain)
        return {
            "chainId": chain or None,
            "name": view.chain_name,
            "primary": view.is_primary,
            "nodeHead": progress.head,
            "indexedBlock": progress.indexed,
            "lag": progress.lag,
            "indexing": progress.describe(),
            "safe": marks.safe.to_json() if marks else None,
            "finalized": marks.finalized.to_json() if marks else None,
        }

    def _prices(
        self, rest: str, environ: dict[str, Any], start_response: StartResponse, cors: list[Any]
    ) -> Iterable[bytes]:
        """`/api/prices/<TOKEN>` (latest updates, newest first) and
        `/api/prices/<TOKEN>/candles?interval=1m|5m|1h` (OHLC per interval)."""
        token, _, tail = rest.partition("/")
        if not TOKEN.match(token) or tail not in ("", "candles"):
            return self._json(start_response, 404, {"error": "not found"}, cors)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        default = "60" if tail else "100"
        limit = _whole(query.get("limit", [default])[0])
        if limit is None or not 1 <= limit <= MAX_PRICE_LIMIT:
            problem = f"limit must be 1..{MAX_PRICE_LIMIT}"
            return self._json(start_response, 400, {"error": problem}, cors)
        if not tail:
            rows = self.db.read(queries.price_history, token, limit)
            return self._json(start_response, 200, [_price(p) for p in rows], cors)
        interval = query.get("interval", ["1m"])[0]
        if interval not in INTERVALS:
            choices = "|".join(INTERVALS)
            return self._json(start_response, 400, {"error": f"interval must be {choices}"}, cors)
        found = self.db.read(queries.candles, token, INTERVALS[interval], limit)
        return self._json(start_response, 200, [_candle(c) for c in found], cors)

    def _ready(self, start_response: StartResponse, cors: list[Any]) -> Iterable[bytes]:
        checks: dict[str, str] = {}
        try:
            self._redis.ping()
            checks["redis"] = "ok"
        except redis.RedisError as exc:
            checks["redis"] = f"unreachable: {exc}"
        stalled = False
        try:
            primary = self.views[0]
            # one read: it pings too
            halt, indexed = self.db.read(_indexing_state, self._id(primary))
            checks["database"] = "ok"
            if halt is not None:
                checks["indexing"] = f"halted: {halt.reason}"
            else:
                checks["indexing"] = self._progress(primary, indexed).describe()
                stalled = checks["indexing"] != "ok"
        except Exception as exc:  # noqa: BLE001 - any driver error means not ready
            checks.setdefault("database", f"unreachable: {type(exc).__name__}")
        if self.pubsub is not None:
            age = self.pubsub.canary_age()
            checks["pubsub"] = "ok" if self.pubsub.healthy else f"silent for {age:.0f} s"
        if self.stream is not None:
            checks["stream"] = "ok" if self.stream.connected else "disconnected"
        # a stall fails readiness only when asked: a 503 takes every web process out of
        # its load balancer, and they serve clients well while indexing is behind
        counted = dict(checks)
        if stalled and not self.settings.ready_requires_indexing:
            del counted["indexing"]
        ready = all(value == "ok" for value in counted.values())
        return self._json(start_response, 200 if ready else 503, checks, cors)

    def _progress(self, view: RealtimeSettings, indexed: int | None) -> IndexingProgress:
        """Compare a chain's highest indexed block with the last head its follower saw;
        update the primary's gauges."""
        try:
            seen = read_head(self._redis, view.chain_key(HEAD_KEY))
        except redis.RedisError:
            seen = None
        watch = self.watches[view.chain_name]
        progress = watch.observe(indexed, seen.number if seen else None, time.monotonic())
        if view.is_primary:
            self.metrics.indexing_lag.set(progress.lag if progress.lag is not None else -1)
            self.metrics.indexing_stalled.set(0 if progress.stalled_for is None else 1)
        return progress

    def _allow(self, environ: dict[str, Any]) -> bool:
        now = time.monotonic()
        if now - self._last_prune > self.settings.rate_window:
            self.limiter.prune()
            self._last_prune = now
        return self.limiter.allow(client_address(environ, self.settings.trusted_proxy_header))

    def _cors(self, origin: str | None) -> list[tuple[str, str]]:
        if "*" in self.origins:
            return [("Access-Control-Allow-Origin", "*")]
        if origin and origin in self.origins:
            return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return []

    def _json(
        self, start_response: StartResponse, status: int, body: Any, cors: list[Any]
    ) -> Iterable[bytes]:
        return self._send(
            start_response, status, json.dumps(body).encode(), "application/json", cors
        )

    def _send(
        self,
        start_response: StartResponse,
        status: int,
        body: bytes,
        content_type: str,
        cors: list[Any],
    ) -> Iterable[bytes]:
        reason = {
            200: "OK",
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            429: "Too Many Requests",
            503: "Service Unavailable",
        }[status]
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *cors]
        start_response(f"{status} {reason}", headers)
        return [body]


def _indexing_state(conn: Connection, chain: int) -> tuple[Halt | None, int | None]:
    """`chain`'s recorded halt and highest indexed block."""
    return halt_in(conn, chain), queries.latest_block_number(conn, chain)


def _whole(raw: str) -> int | None:
    """A non-negative whole number written in ASCII digits (at most 20), or None.

    `str.isdigit` alone accepts "²" and other digits `int` refuses.
    """
    if not raw or len(raw) > 20 or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def _block(row: queries.BlockRow) -> dict[str, Any]:
    return {
        **protocol.block_fields(protocol.indexed_from_row(row)),
        "gasLimit": row.gas_limit,
        "baseFeePerGas": None if row.base_fee_per_gas is None else str(row.base_fee_per_gas),
        "miner": row.miner,
    }


def _candle(candle: queries.Candle) -> dict[str, Any]:
    """One interval: its start (ms), exact decimal strings, and the number of updates."""
    return {
        "start": candle.start_ms,
        "open": plain(candle.open),
        "high": plain(candle.high),
        "low": plain(candle.low),
        "close": plain(candle.close),
        "count": candle.count,
    }


def _price(row: queries.PriceRow) -> dict[str, Any]:
    """The `price-update` payload of a stored price; `timestamp` is when it was stored."""
    update = protocol.price_update(protocol.price_event_from_row(row))
    return {**update, "timestamp": row.updated_at_ms}
