"""The `chainpulse follow` process, composed in one place from its settings."""

from __future__ import annotations

import logging
import signal

import redis

from follower.config import FollowerSettings
from follower.follower import SWEEP_INTERVAL_S, Follower
from follower.lease import Lease
from follower.metrics import FollowerMetrics
from follower.queue import FencedQueue
from indexer import loglines
from indexer.bus import EventBus
from indexer.rpc import Node
from indexer.store import Store
from indexer.urls import mask_url
from workers.jobs import broker

log = logging.getLogger(__name__)


def build(
    settings: FollowerSettings,
    *,
    store: Store | None = None,
    sweep_interval: float = SWEEP_INTERVAL_S,
    owner: str | None = None,
) -> Follower:
    """A follower on `settings`; connects to nothing until it runs. `store` shares a
    database engine (tests run several followers on one)."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    lease = Lease(client, settings.follower_lock_ttl, owner)
    store = store or Store(settings.database_url, sources=settings.price_sources)
    metrics = FollowerMetrics()
    metrics.watch(store, client)
    return Follower(
        settings,
        Node.from_settings(settings),
        store,
        client,
        FencedQueue(broker(settings.redis_url), client, lease),
        EventBus(client, settings.stream_key, settings.stream_maxlen, settings.redis_url),
        metrics=metrics,
        sweep_interval=sweep_interval,
    )


def close(follower: Follower, *, store: bool = True) -> None:
    """Release what `build` opened (`store=False` keeps a shared store's engine)."""
    follower.queue.close()
    follower.client.close()
    if store:
        follower.store.dispose()


def run(settings: FollowerSettings) -> None:
    """Follow until SIGTERM or SIGINT; refuses to start on a database without the schema
    or one that indexes another chain."""
    loglines.configure(settings.log_format, settings.log_level)
    follower = build(settings)
    try:
        follower.store.check_schema()
        follower.store.bind_chain(follower.node.chain_id())
        follower.store.prepare_prices_at_start(follower.node)

        def stop(*_: object) -> None:
            follower.stop.set()
            follower.wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if settings.follower_metrics_port:
            follower.metrics.serve(settings.follower_metrics_port)
        log.info(
            "following %s (redis %s), poll %.2f s%s",
            follower.node.describe(),
            mask_url(settings.redis_url),
            settings.poll_interval,
            f", newHeads at {mask_url(settings.ws_url)}" if settings.ws_url else "",
        )
        follower.run()
    finally:
        close(follower)
