"""The worker's main process: its log format and its metrics endpoint, set up once at
start (before the pool forks, so every pool process inherits both) and closed at exit.

Celery imports this module with the tasks (`include`), before any of these signals.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from celery.signals import celeryd_init, setup_logging, worker_process_shutdown, worker_shutdown

from indexer import loglines
from indexer.chains import check_node
from indexer.errors import ConfigError, RetryableError
from indexer.rpc import Node
from indexer.store import Store
from workers.app import app, settings_of
from workers.config import WorkerSettings
from workers.metrics import Exporter, JobMetrics, SilentMetrics, WorkerMetrics

log = logging.getLogger(__name__)

_exporter: Exporter | None = None
_metrics: JobMetrics = SilentMetrics()


def metrics() -> JobMetrics:
    """This process's metrics (counting nothing when `WORKER_METRICS_PORT` is 0)."""
    return _metrics


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    # connected, this signal keeps Celery from configuring logging itself; a worker's
    # `-l` is therefore not used: LOG_LEVEL sets every process's level
    settings = settings_of(app)
    loglines.configure(settings.log_format, settings.log_level)


def check_chains(settings: WorkerSettings) -> None:
    """Before the pool forks: each chain of a chains file must be served by its node
    (ChainMismatchError, naming both, when it answers with another id), and each chain's
    price sources' metadata is read once (its processes find it in the database);
    ConfigError when the chain contradicts the sources file. A node that does not answer
    only delays this to the chain's first job."""
    for view in settings.chains():
        node = Node.from_settings(view)
        if view.chain_id is not None or view.price_sources is not None:
            try:
                served = node.chain_id()
            except RetryableError as exc:
                log.warning("chain %s: its node does not answer yet (%s)", view.chain_name, exc)
                continue
            if view.chain_id is not None:
                check_node(view.chain_name, view.chain_id, served, f"CHAINS {view.chains_file}")
        if view.price_sources is None:
            continue
        store = Store(view.database_url, sources=view.price_sources, chain_id=served)
        try:
            store.prepare_prices_at_start(node)
        finally:
            store.dispose()


@celeryd_init.connect
def _start(instance: Any = None, options: dict[str, Any] | None = None, **_: Any) -> None:
    global _exporter, _metrics
    settings = settings_of(app)
    concurrency = (options or {}).get("concurrency")
    if concurrency:  # `--concurrency` wins over WORKER_CONCURRENCY: the pool's real size
        app.conf.worker_concurrency = int(concurrency)
    # before Celery's first warnings (it checks its privileges right after this signal)
    loglines.configure(settings.log_format, settings.log_level)
    if settings.log_format == "json" and instance is not None:
        instance.quiet = True  # no start-up banner: every line of output is JSON
    try:
        check_chains(settings)
    except ConfigError as exc:
        print(f"chainpulse: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if not settings.worker_metrics_port:
        return
    exporter = Exporter(settings)
    try:
        exporter.start()
    except ConfigError as exc:
        print(f"chainpulse: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    _exporter, _metrics = exporter, WorkerMetrics()


@worker_process_shutdown.connect
def _pool_process_exited(**_: Any) -> None:
    if _exporter is not None:
        _exporter.process_exited(os.getpid())


@worker_shutdown.connect
def _close_metrics(**_: Any) -> None:
    if _exporter is not None:
        _exporter.close()
