"""The worker's Prometheus metrics, summed over its prefork processes.

Celery runs jobs in forked pool processes, each with its own memory, so the counters
use prometheus_client's multiprocess mode: each process writes its values to files in
one directory, and the main process serves their sum on `WORKER_METRICS_PORT`.

Its conditions, kept here:
- `PROMETHEUS_MULTIPROC_DIR` is read when prometheus_client is first imported, so
  `prepare` sets it (in the main process, before the pool forks) before anything
  imports prometheus_client; nothing on the worker's import path does (a test checks).
  Only the worker sets it: the other processes share the environment under a process
  manager and keep their own registries (`chainpulse.cli` drops an inherited one).
- One directory per worker instance (`WORKER_METRICS_DIR`, by default one per port
  under the temporary directory), emptied at start: files of an earlier run would
  otherwise be summed in. The port is taken first, so a second worker on the same port
  stops before it could empty a running worker's directory. It is removed at a clean
  exit.
- `mark_process_dead` at a pool process's exit removes only live-gauge files, which is
  why the one gauge here (`chainpulse_jobs_running`) is `livesum`; a dead process's
  counters stay in the sum, as counters must.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from indexer.errors import ConfigError
from indexer.events import BlockIndexed, BlockReorged
from indexer.observer import Observer
from workers.config import WorkerSettings

REORG_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)


def reorg_depths(registry: Any, labels: Sequence[str] = ()) -> Any:
    """The reorgs-by-depth histogram, as the worker and the follower both declare it
    (whoever repairs a reorg counts it). Imports prometheus_client: see the module's
    docstring for when the worker may."""
    from prometheus_client import Histogram

    return Histogram(
        "chainpulse_reorg_depth_blocks",
        "Reorgs repaired, by depth (blocks removed)",
        labels,
        buckets=REORG_BUCKETS,
        registry=registry,
    )


class JobMetrics(Protocol):
    """What a job reports: `SilentMetrics`, or `WorkerMetrics` when they are served."""

    def indexed(self, events: Sequence[BlockIndexed]) -> None: ...

    def reorged(self, event: BlockReorged) -> None: ...

    def retried(self, reason: str) -> None: ...

    def failed(self, reason: str) -> None: ...

    def job(self) -> contextlib.AbstractContextManager[None]: ...

    def for_chain(self, name: str) -> Observer: ...


class SilentMetrics:
    """The worker's metrics when `WORKER_METRICS_PORT` is 0: counts nothing."""

    def indexed(self, events: Sequence[BlockIndexed]) -> None:
        pass

    def reorged(self, event: BlockReorged) -> None:
        pass

    def retried(self, reason: str) -> None:
        pass

    def failed(self, reason: str) -> None:
        pass

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        yield

    def for_chain(self, name: str) -> Observer:
        """What one chain's indexer reports (its series labelled with the chain)."""
        return self


class WorkerMetrics(SilentMetrics):
    """The counters; build only after `prepare` (it imports prometheus_client)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        r = registry or REGISTRY  # the pool's values go to files, whatever the registry
        self.blocks = Counter(
            "chainpulse_blocks_indexed",
            "Blocks written, by chain and job source",
            ["chain", "source"],
            registry=r,
        )
        self.transactions = Counter(
            "chainpulse_transactions_indexed",
            "Transactions written with their blocks, by chain",
            ["chain"],
            registry=r,
        )
        self.retries = Counter(
            "chainpulse_job_retries",
            "Jobs retried after a retryable error, by reason",
            ["reason"],
            registry=r,
        )
        self.failures = Counter(
            "chainpulse_job_failures", "Jobs failed for good, by reason", ["reason"], registry=r
        )
        self.running = Gauge(
            "chainpulse_jobs_running", "Jobs running now", multiprocess_mode="livesum", registry=r
        )
        self.duration = Histogram(
            "chainpulse_job_duration_seconds", "Time a job ran, any outcome", registry=r
        )
        self.reorgs = reorg_depths(r, ["chain"])

    def for_chain(self, name: str) -> Observer:
        return _ChainCounts(self, name)

    def retried(self, reason: str) -> None:
        self.retries.labels(reason).inc()

    def failed(self, reason: str) -> None:
        self.failures.labels(reason).inc()

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        started = time.monotonic()
        self.running.inc()
        try:
            yield
        finally:
            self.running.dec()
            self.duration.observe(time.monotonic() - started)


class _ChainCounts:
    """One chain's blocks, transactions and reorgs, counted by `WorkerMetrics`."""

    def __init__(self, metrics: WorkerMetrics, name: str) -> None:
        self.metrics = metrics
        self.name = name

    def indexed(self, events: Sequence[BlockIndexed]) -> None:
        for event in events:
            self.metrics.blocks.labels(self.name, event.source).inc()
            self.metrics.transactions.labels(self.name).inc(event.transactions)

    def reorged(self, event: BlockReorged) -> None:
        self.metrics.reorgs.labels(self.name).observe(event.depth)


def directory(settings: WorkerSettings) -> Path:
    if settings.worker_metrics_dir:
        return Path(settings.worker_metrics_dir)
    return Path(tempfile.gettempdir()) / f"chainpulse-worker-{settings.worker_metrics_port}"


class Exporter:
    """The main process's end: the directory and the HTTP server over it."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.port = settings.worker_metrics_port
        self.path = directory(settings)
        self._server: Any = None

    def start(self) -> None:
        """Point prometheus_client at the directory, serve the pool's sum at `/metrics`
        on the port (a daemon thread), then empty the directory of an earlier run.

        Raises ConfigError when the port is taken or prometheus_client was imported
        before (the pool's values would not reach the directory)."""
        if "prometheus_client" in sys.modules:
            raise ConfigError(
                "prometheus_client was imported before the worker set "
                "PROMETHEUS_MULTIPROC_DIR; its pool processes' metrics would be lost"
            )
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self.path)
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        self.path.mkdir(parents=True, exist_ok=True)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.path))
        try:
            self._server, _ = start_http_server(self.port, registry=registry)
        except OSError as exc:
            raise ConfigError(
                f"WORKER_METRICS_PORT {self.port} is taken ({exc.strerror}): give each "
                "worker on this host a port of its own, or 0 for none"
            ) from None
        for old in self.path.iterdir():  # ours now: the port is held
            old.unlink()

    def process_exited(self, pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(self.path))

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        shutil.rmtree(self.path, ignore_errors=True)
