"""`chainpulse serve`: the Socket.IO server, its stream reader and its HTTP, composed.

The entry point (`chainpulse.cli`) has already monkey patched eventlet. Nothing here
connects at import time: `build` wires the parts (the transport, `realtime.transport`;
the push rules, `realtime.push`; the gateway's handlers; the HTTP API), `run` starts the
background work and serves until SIGTERM or SIGINT (`transport.listener`).
"""

from __future__ import annotations

import gc
import logging
import resource
from dataclasses import dataclass
from typing import Any

from indexer import loglines, queries
from realtime import protocol
from realtime.config import RealtimeSettings
from realtime.gateway import Gateway
from realtime.http import HttpApp
from realtime.metrics import Metrics
from realtime.push.feed import Feed
from realtime.push.stream import StreamReader
from realtime.ratelimit import SlidingWindowLimiter
from realtime.reads import Database
from realtime.transport.pubsub import PubSub
from realtime.transport.socket_fanout import SocketFanout

log = logging.getLogger("chainpulse.realtime")


@dataclass
class Realtime:
    settings: RealtimeSettings
    fanout: SocketFanout
    app: Any  # the WSGI application
    gateway: Gateway
    feed: Feed
    db: Database
    metrics: Metrics
    pubsub: PubSub | None
    stream: StreamReader | None

    def start_background(self) -> None:
        """Start the pub/sub listener with its canary, and the stream reader."""
        self.fanout.start(self.stream.run if self.stream is not None else None)


def build(settings: RealtimeSettings, async_mode: str = "eventlet", redis: bool = True) -> Realtime:
    """Wire the server. `async_mode="threading"` with `redis=False` gives an in-process
    server without Redis, for driving its transport directly in tests."""
    metrics = Metrics()
    pubsub = PubSub(settings.redis_url, canary_interval=settings.canary_interval) if redis else None
    fanout = SocketFanout.build(settings, metrics.refuse, pubsub, async_mode)
    metrics.watch_transport(fanout.counters(), fanout.sizes())
    if pubsub is not None:
        metrics.watch_pubsub(pubsub)
    db = Database(settings.database_url, offload=fanout.offload)
    feed = Feed(fanout, settings, db, metrics)
    limiter = SlidingWindowLimiter(settings.rate_limit, settings.rate_window)
    gateway = Gateway(fanout, settings, feed, metrics, limiter)
    fanout.serve(gateway)
    stream = (
        StreamReader(
            settings.redis_url,
            [view.stream_key for view in settings.chains()],
            handle=feed.handle,
            tick=feed.tick,
            catch_up=feed.catch_up,
            metrics=metrics,
            sleep=fanout.sleep,
            corked=fanout.corked,
        )
        if redis
        else None
    )
    http = HttpApp(settings, db, metrics, pubsub, stream)
    return Realtime(settings, fanout, fanout.wsgi(http), gateway, feed, db, metrics, pubsub, stream)


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit: %s", exc)


def run(settings: RealtimeSettings) -> None:
    from realtime.transport import listener

    loglines.configure(settings.log_format, settings.log_level)
    _raise_open_files_limit()
    realtime = build(settings)
    try:
        for view in settings.chains():
            chain = view.chain_id if view.chain_id is not None else realtime.db.primary()
            latest = realtime.db.read(queries.latest_block_number, chain)
            realtime.feed.start_at(latest, view.chain_id)
    except Exception as exc:  # noqa: BLE001 - an unreachable database must not stop pushes
        log.warning("database unreachable at start-up (%s); pushing from the stream's end", exc)
    realtime.start_background()
    # Thousands of long-lived objects per client make full collections slow and
    # frequent; collect young objects less often and leave start-up state out of it.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    log.info("serving %s on port %d", protocol.NAMESPACE, settings.port)
    listener.serve(
        realtime.fanout,
        realtime.app,
        settings.port,
        settings.http_timeout,
        settings.shutdown_timeout,
    )
