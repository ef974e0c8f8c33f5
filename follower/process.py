"""The `chainpulse follow` process, composed in one place from its settings."""

from __future__ import annotations

import logging
import signal
import threading

import redis

from follower.config import FollowerSettings
from follower.follower import SWEEP_INTERVAL_S, Follower
from follower.lease import LOCK_KEY, TOKEN_KEY, Lease
from follower.metrics import FollowerMetrics
from follower.queue import CURSOR_KEY, FencedQueue
from indexer import loglines
from indexer.bus import EventBus
from indexer.chains import bind
from indexer.errors import RetryableError
from indexer.rpc import Node
from indexer.store import Store
from indexer.urls import mask_url
from workers.jobs import broker, start_sync

log = logging.getLogger(__name__)


def build(
    settings: FollowerSettings,
    *,
    store: Store | None = None,
    sweep_interval: float = SWEEP_INTERVAL_S,
    owner: str | None = None,
    metrics: FollowerMetrics | None = None,
) -> Follower:
    """A follower of the chain of `settings` (one of `settings.chains()`); connects to
    nothing until it runs. `store` shares a database engine (tests run several
    followers on one); `metrics` is the process's registry, which every chain's
    follower counts into."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    lease = Lease(
        client,
        settings.follower_lock_ttl,
        owner,
        settings.chain_key(LOCK_KEY),
        settings.chain_key(TOKEN_KEY),
    )
    store = store or Store(
        settings.database_url,
        sources=settings.price_sources,
        chain_id=settings.chain_id,
        contracts=settings.contracts,  # a reorg's replacement blocks are decoded too
    )
    registry = metrics or FollowerMetrics()
    chain_metrics = registry.chain(settings.chain_name)
    registry.watch(chain_metrics, store, client)
    return Follower(
        settings,
        Node.from_settings(settings),
        store,
        client,
        FencedQueue(broker(settings.redis_url), client, lease, settings.chain_key(CURSOR_KEY)),
        EventBus(client, settings.stream_key, settings.stream_maxlen, settings.redis_url),
        metrics=chain_metrics,
        sweep_interval=sweep_interval,
    )


def _decode_history(follower: Follower) -> None:
    """Send the jobs that decode the history of contracts added to the contracts file,
    or changed, from the stored logs (`indexer.event_sync`): the workers run them beside
    indexing. Trouble here is logged, and indexing goes on."""
    view = follower.settings
    if not view.contracts:
        return
    app = broker(view.redis_url)
    try:
        found = start_sync(view, follower.store, app)
    except Exception as exc:  # noqa: BLE001 - Redis or the database away: indexing goes on
        log.warning(
            "chain %s: contract histories not sent for decoding (run `chainpulse contracts "
            "sync`): %s",
            view.chain_name,
            exc,
        )
        return
    finally:
        app.close()
    for name, state in found.items():
        if not state.complete:
            log.info(
                "decoding %s's history from the stored logs: blocks %d..%d (%d done)",
                name, state.first, state.last, state.decoded,
            )  # fmt: skip


def close(follower: Follower, *, store: bool = True) -> None:
    """Release what `build` opened (`store=False` keeps a shared store's engine)."""
    follower.queue.close()
    follower.client.close()
    if store:
        follower.store.dispose()


def run(settings: FollowerSettings) -> None:
    """Follow every chain of `settings` until SIGTERM or SIGINT, each in a thread of its
    own (one chain's slow node delays no other's rounds), each with its own lease, so
    that followers on several hosts share the chains. Refuses to start on a database
    without the schema, a node on another chain than its entry names, or a database
    whose primary chain is another."""
    loglines.configure(settings.log_format, settings.log_level)
    registry = FollowerMetrics()
    followers = [build(view, metrics=registry) for view in settings.chains()]
    try:
        for follower in followers:
            follower.store.check_schema()
            try:
                bind(follower.store, follower.node, follower.settings)
            except RetryableError as exc:  # its thread binds it once the node answers
                log.warning("chain %s: %s", follower.settings.chain_name, exc)
                continue
            follower.bound = True
            follower.store.prepare_prices_at_start(follower.node)
            _decode_history(follower)

        def stop(*_: object) -> None:
            for follower in followers:
                follower.stop.set()
                follower.wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if settings.follower_metrics_port:
            registry.serve(settings.follower_metrics_port)
        threads = []
        failed: list[BaseException] = []

        def follow(follower: Follower) -> None:
            try:
                with loglines.context(chain=follower.settings.chain_name):
                    follower.run()
            except BaseException as exc:  # every chain stops, and the process exits
                failed.append(exc)
                stop()

        for follower in followers:
            view = follower.settings
            log.info(
                "following %s%s (redis %s), poll %.2f s%s",
                follower.node.describe(),
                "" if view.chains_file is None else f" as chain {view.chain_name}",
                mask_url(view.redis_url),
                view.poll_interval,
                f", newHeads at {mask_url(view.ws_url)}" if view.ws_url else "",
            )
            thread = threading.Thread(
                target=follow, args=(follower,), name=f"follow-{view.chain_name}", daemon=True
            )
            thread.start()
            threads.append(thread)
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # in steps: the signal handler runs between them
        if failed:
            raise failed[0]
    finally:
        for follower in followers:
            close(follower)
