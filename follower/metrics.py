"""The follower's Prometheus metrics, on `FOLLOWER_METRICS_PORT`, in a registry of its own.

Counted as it works: its role and fencing token, the last head it read, heights
enqueued, failed rounds by reason, reorgs repaired by depth. Read when scraped (a few
cheap queries, so they are current even while the follower waits): the highest
indexed block and the lag behind the head in blocks and seconds, the `blocks` queue's
depth and the outbox backlog. A standby reports its role and the queue and outbox,
but no head and so no lag: the active follower's is the deployment's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from indexer import queries
from indexer.errors import ConfigError
from indexer.events import BlockReorged
from indexer.store import Store
from workers.jobs import QUEUE
from workers.metrics import reorg_depths

log = logging.getLogger(__name__)


class FollowerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.active = Gauge(
            "chainpulse_follower_active", "1 while this follower holds the lock", registry=r
        )
        self.token = Gauge(
            "chainpulse_follower_fencing_token",
            "The fencing token of this follower's lease (0 as a standby)",
            registry=r,
        )
        self.head = Gauge(
            "chainpulse_node_head_block", "The node's head as the follower last read it", registry=r
        )
        self.head_time = Gauge(
            "chainpulse_node_head_timestamp_seconds", "Chain time of that head block", registry=r
        )
        self.enqueued = Counter(
            "chainpulse_heights_enqueued",
            "Heights the follower put on the blocks queue, by source (head, backfill)",
            ["source"],
            registry=r,
        )
        self.failed_rounds = Counter(
            "chainpulse_follower_rounds_failed",
            "Follower rounds that failed and were retried, by reason",
            ["reason"],
            registry=r,
        )
        self.reorgs = reorg_depths(r)
        self.last_head: tuple[int, int] | None = None  # (number, chain time) read last

    # as the follower works
    def role(self, token: int | None) -> None:
        self.active.set(1 if token is not None else 0)
        self.token.set(token or 0)

    def saw_head(self, number: int, timestamp: int) -> None:
        self.head.set(number)
        self.head_time.set(timestamp)
        self.last_head = (number, timestamp)

    def lost_head(self) -> None:
        self.last_head = None

    def queued(self, source: str, count: int) -> None:
        if count:
            self.enqueued.labels(source).inc(count)

    def round_failed(self, reason: str) -> None:
        self.failed_rounds.labels(reason).inc()

    def reorged(self, event: BlockReorged) -> None:
        self.reorgs.observe(event.depth)

    # read when scraped
    def watch(self, store: Store, broker: redis.Redis) -> None:
        self.registry.register(_Backlog(self, store, broker))

    def serve(self, port: int) -> Any:
        """Serve `/metrics` on `port` (a daemon thread); ConfigError when it is taken."""
        try:
            server, _ = start_http_server(port, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"FOLLOWER_METRICS_PORT {port} is taken ({exc.strerror}): give each follower "
                "on this host a port of its own, or 0 for none"
            ) from None
        return server


# read when scraped: name -> help
SCRAPED = {
    "chainpulse_outbox_backlog": "Events committed, not yet on the stream",
    "chainpulse_indexed_block": "The highest indexed block",
    "chainpulse_indexing_lag_blocks": "The node's head minus the highest indexed block",
    "chainpulse_indexing_lag_seconds": (
        "Chain time of the node's head minus that of the highest indexed block"
    ),
    "chainpulse_queue_depth": "Jobs waiting on the blocks queue",
}


class _Backlog(Collector):
    def __init__(self, metrics: FollowerMetrics, store: Store, broker: redis.Redis) -> None:
        self.metrics = metrics
        self.store = store
        self.broker = broker

    def describe(self) -> list[Any]:
        return []  # collected only when scraped, never at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.store.engine.connect() as conn:
                top = queries.latest_blocks(conn, 1)
                backlog = queries.outbox_backlog(conn)
        except Exception as exc:  # noqa: BLE001 - a scrape must answer without the database
            log.warning("metrics: database unreachable: %s", exc)
        else:
            yield _gauge("chainpulse_outbox_backlog", backlog)
            if top:
                tip = top[0]
                yield _gauge("chainpulse_indexed_block", tip.number)
                if self.metrics.last_head is not None:
                    head, head_time = self.metrics.last_head
                    yield _gauge("chainpulse_indexing_lag_blocks", max(head - tip.number, 0))
                    yield _gauge(
                        "chainpulse_indexing_lag_seconds", max(head_time - tip.timestamp, 0)
                    )
        try:
            depth = int(self.broker.llen(QUEUE))
        except redis.RedisError as exc:
            log.warning("metrics: Redis unreachable: %s", exc)
        else:
            yield _gauge("chainpulse_queue_depth", depth)


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, SCRAPED[name], value=value)
