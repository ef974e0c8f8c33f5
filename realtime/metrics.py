"""Prometheus metrics of one server process, in a registry of its own."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from realtime.ratelimit import LogThrottle

log = logging.getLogger("chainpulse.realtime.refusals")


class PubSubHealth(Protocol):
    healthy: bool

    def canary_age(self) -> float: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._pushed: dict[str, Any] = {}
        self._refused: dict[str, Any] = {}
        self._refusal_log = LogThrottle(log)
        r = self.registry
        self.connected = Gauge(
            "chainpulse_realtime_connected_clients", "Clients connected to /realtime", registry=r
        )
        self.pushed = Counter(
            "chainpulse_realtime_messages_pushed",
            "Messages pushed to clients (one per recipient), by event",
            ["event"],
            registry=r,
        )
        self.refusals = Counter(
            "chainpulse_realtime_refusals",
            "Client messages or connections refused, by reason",
            ["reason"],
            registry=r,
        )
        self.stream_lag = Gauge(
            "chainpulse_realtime_stream_lag_seconds",
            "Age of the last stream entry handled when it was handled",
            registry=r,
        )
        self.stream_entries = Counter(
            "chainpulse_realtime_stream_entries",
            "Stream entries read, by outcome (handled, duplicate, malformed)",
            ["outcome"],
            registry=r,
        )
        self.stream_connected = Gauge(
            "chainpulse_realtime_stream_connected",
            "1 while the stream reader reaches Redis",
            registry=r,
        )
        self.blocks_skipped = Counter(
            "chainpulse_realtime_blocks_skipped",
            "Heights given up on by the new-block sequencer (gaps that never filled)",
            registry=r,
        )
        self.blocks_filled = Counter(
            "chainpulse_realtime_blocks_filled",
            "Blocks pushed from the database because their stream entry never came "
            "(Redis lost it before this process read it)",
            registry=r,
        )
        self.pubsub_healthy = Gauge(
            "chainpulse_realtime_pubsub_healthy",
            "1 while this process hears its own pub/sub canary (python-socketio #1581)",
            registry=r,
        )
        self.pubsub_canary_age = Gauge(
            "chainpulse_realtime_pubsub_canary_age_seconds",
            "Seconds since this process last heard its own pub/sub canary",
            registry=r,
        )

        self.direct_writes = Gauge(
            "chainpulse_realtime_direct_writes",
            "Frames written straight to an idle WebSocket, skipping its queue (since start)",
            registry=r,
        )
        self.partial_writes = Gauge(
            "chainpulse_realtime_partial_writes",
            "Direct writes the kernel took only partly (the rest was queued), since start",
            registry=r,
        )
        self.peak_held = Gauge(
            "chainpulse_realtime_connection_held_bytes_peak",
            "The most bytes one WebSocket connection held, since start: measured after each "
            "parse, after each read and when a packet is queued "
            "(its parser's buffers, unhandled messages, held answers and queue)",
            registry=r,
        )
        self.indexing_lag = Gauge(
            "chainpulse_realtime_indexing_lag_blocks",
            "Node head (as the follower last saw it) minus the highest indexed block; "
            "-1 when either is unknown",
            registry=r,
        )
        self.indexing_stalled = Gauge(
            "chainpulse_realtime_indexing_stalled",
            "1 while the highest indexed block has not moved for INDEXING_STALL_TIMEOUT "
            "seconds although the node's head has",
            registry=r,
        )
        self.tracked = Gauge(
            "chainpulse_realtime_tracked_state",
            "Entries of per-connection state held, by kind (must return to 0 when idle)",
            ["kind"],
            registry=r,
        )

    def watch_transport(
        self, counters: dict[str, Callable[[], float]], sizes: dict[str, Callable[[], int]]
    ) -> None:
        """Read the transport's own figures at each scrape."""
        self.direct_writes.set_function(counters["direct_writes"])
        self.partial_writes.set_function(counters["partial_writes"])
        self.peak_held.set_function(counters["peak_held"])
        for kind, size in sizes.items():
            self.track(kind, size)

    def watch_pubsub(self, pubsub: PubSubHealth) -> None:
        self.pubsub_healthy.set_function(lambda: 1.0 if pubsub.healthy else 0.0)
        self.pubsub_canary_age.set_function(pubsub.canary_age)

    def track(self, kind: str, size: Callable[[], int]) -> None:
        self.tracked.labels(kind).set_function(lambda: float(size()))

    def refuse(self, reason: str) -> None:
        """Count a refusal, and log it (one line per reason per 10 s at most)."""
        self._refusal_log.info(reason, f"refused: {reason}")
        child = self._refused.get(reason)
        if child is None:
            child = self._refused[reason] = self.refusals.labels(reason)
        child.inc()

    def push(self, event: str, recipients: int = 1) -> None:
        child = self._pushed.get(event)
        if child is None:
            child = self._pushed[event] = self.pushed.labels(event)
        child.inc(recipients)

    def render(self) -> bytes:
        return generate_latest(self.registry)
