"""The follower's Prometheus metrics, on `FOLLOWER_METRICS_PORT`, in a registry of its own.

Counted as it works: its role and fencing token, the last head it read, heights
enqueued, failed rounds by reason, reorgs repaired by depth. Read when scraped (a few
cheap queries, so they are current even while the follower waits): the highest
indexed block and the lag behind the head in blocks and seconds, the `blocks` queue's
depth and the outbox backlog. A standby reports its role and the queue and outbox,
but no head and so no lag: the active follower's is the deployment's.
"""

from __future__ import annotations

import contextlib
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
    """The process's registry; each chain's follower counts through `chain(name)`, so
    its series carry a `chain` label (bounded: the chains come from the file)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        by_chain = ["chain"]
        self.active = Gauge(
            "chainpulse_follower_active",
            "1 while this follower holds the chain's lock",
            by_chain,
            registry=r,
        )
        self.token = Gauge(
            "chainpulse_follower_fencing_token",
            "The fencing token of this follower's lease of the chain (0 as a standby)",
            by_chain,
            registry=r,
        )
        self.head = Gauge(
            "chainpulse_node_head_block",
            "The node's head as the follower last read it",
            by_chain,
            registry=r,
        )
        self.head_time = Gauge(
            "chainpulse_node_head_timestamp_seconds",
            "Chain time of that head block",
            by_chain,
            registry=r,
        )
        self.marks = Gauge(
            "chainpulse_finality_block",
            "The chain's safe and finalized blocks as the follower last announced them",
            ["chain", "mark"],
            registry=r,
        )
        self.enqueued = Counter(
            "chainpulse_heights_enqueued",
            "Heights the follower put on the blocks queue, by source (head, backfill)",
            ["chain", "source"],
            registry=r,
        )
        self.failed_rounds = Counter(
            "chainpulse_follower_rounds_failed",
            "Follower rounds that failed and were retried, by reason",
            ["chain", "reason"],
            registry=r,
        )
        self.reorgs = reorg_depths(r, by_chain)
        self._chains: dict[str, ChainMetrics] = {}
        self._scraped = _Scraped(self)
        r.register(self._scraped)

    def chain(self, name: str) -> ChainMetrics:
        """The counters of the chain called `name`."""
        if name not in self._chains:
            self._chains[name] = ChainMetrics(self, name)
        return self._chains[name]

    # read when scraped
    def watch(self, chain: ChainMetrics, store: Store, broker: redis.Redis) -> None:
        """Read `store`'s tip for `chain`, and the queue in `broker`, when scraped."""
        self._scraped.watched.append((chain, store, broker))

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


class ChainMetrics:
    """One chain's follower, counting into the process's `FollowerMetrics`."""

    def __init__(self, metrics: FollowerMetrics, name: str) -> None:
        self.name = name
        self.process_metrics = metrics  # what `serve` serves
        self._metrics = metrics
        self.last_head: tuple[int, int] | None = None  # (number, chain time) read last
        self.role(None)  # a standby's series exist from the start

    def role(self, token: int | None) -> None:
        self._metrics.active.labels(self.name).set(1 if token is not None else 0)
        self._metrics.token.labels(self.name).set(token or 0)

    def saw_head(self, number: int, timestamp: int) -> None:
        self._metrics.head.labels(self.name).set(number)
        self._metrics.head_time.labels(self.name).set(timestamp)
        self.last_head = (number, timestamp)

    def marks(self, safe: int | None, finalized: int | None) -> None:
        """The finality marks as announced; None: none recorded (the series go)."""
        for mark, number in (("safe", safe), ("finalized", finalized)):
            if number is not None:
                self._metrics.marks.labels(self.name, mark).set(number)
            else:
                with contextlib.suppress(KeyError):
                    self._metrics.marks.remove(self.name, mark)

    def lost_head(self) -> None:
        self.last_head = None

    def queued(self, source: str, count: int) -> None:
        if count:
            self._metrics.enqueued.labels(self.name, source).inc(count)

    def round_failed(self, reason: str) -> None:
        self._metrics.failed_rounds.labels(self.name, reason).inc()

    def reorged(self, event: BlockReorged) -> None:
        self._metrics.reorgs.labels(self.name).observe(event.depth)


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
PER_CHAIN = (
    "chainpulse_indexed_block",
    "chainpulse_indexing_lag_blocks",
    "chainpulse_indexing_lag_seconds",
)


class _Scraped(Collector):
    def __init__(self, metrics: FollowerMetrics) -> None:
        self.metrics = metrics
        self.watched: list[tuple[ChainMetrics, Store, redis.Redis]] = []

    def describe(self) -> list[Any]:
        return []  # collected only when scraped, never at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not self.watched:
            return
        families = {
            name: GaugeMetricFamily(name, SCRAPED[name], labels=["chain"]) for name in PER_CHAIN
        }
        backlog: int | None = None
        for chain, store, _ in self.watched:
            try:
                with store.engine.connect() as conn:
                    top = queries.latest_blocks(conn, store.chain, 1)
                    backlog = queries.outbox_backlog(conn)
            except Exception as exc:  # noqa: BLE001 - a scrape must answer without the database
                log.warning("metrics: database unreachable: %s", exc)
                continue
            if top:
                tip = top[0]
                families["chainpulse_indexed_block"].add_metric([chain.name], tip.number)
                if chain.last_head is not None:
                    head, head_time = chain.last_head
                    families["chainpulse_indexing_lag_blocks"].add_metric(
                        [chain.name], max(head - tip.number, 0)
                    )
                    families["chainpulse_indexing_lag_seconds"].add_metric(
                        [chain.name], max(head_time - tip.timestamp, 0)
                    )
        if backlog is not None:
            yield _gauge("chainpulse_outbox_backlog", backlog)
        yield from (f for f in families.values() if f.samples)
        try:
            depth = int(self.watched[0][2].llen(QUEUE))
        except redis.RedisError as exc:
            log.warning("metrics: Redis unreachable: %s", exc)
        else:
            yield _gauge("chainpulse_queue_depth", depth)


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, SCRAPED[name], value=value)
