"""A worker process's jobs: its node client, database and event bus, and how it retries.

`build` composes one `JobRunner` from the settings; each prefork child builds its own
when it starts (`worker_process_init`), never at import time, so children never share
connections. Building connects to nothing, it only loads the drivers, so the first job
does not pay for that. The runner also relays, every few seconds, outbox entries that
were left behind while Redis was away, even while no job arrives.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from celery.signals import worker_process_init, worker_process_shutdown
from celery.utils.time import get_exponential_backoff_interval

from indexer.bus import EventBus
from indexer.errors import ChainpulseError
from indexer.events import BlockIndexed
from indexer.pipeline import Indexer
from indexer.rpc import Node
from indexer.store import Store
from workers.app import app, settings_of
from workers.config import WorkerSettings
from workers.jobs import IndexBlocks
from workers.main import metrics

log = logging.getLogger(__name__)

RELAY_INTERVAL_S = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: 1, 2, 4... seconds, capped at `backoff_max`."""

    max_retries: int
    backoff_max: int  # seconds

    def countdown(self, retries: int) -> int:
        """Seconds before retry number `retries` + 1 (random in [0, 2**retries])."""
        return int(get_exponential_backoff_interval(1, retries, self.backoff_max, full_jitter=True))


class JobRunner:
    """Runs `IndexBlocks` jobs in one worker process."""

    def __init__(self, indexer: Indexer, retry: RetryPolicy) -> None:
        self.indexer = indexer
        self.retry = retry
        self._bound = False
        self._lock = threading.Lock()
        self._relay: threading.Thread | None = None

    def run(self, job: IndexBlocks) -> list[BlockIndexed]:
        """Index `job`'s heights; the node's chain id is checked against the database's
        on the first job (a worker on the wrong node fails that job, not its start)."""
        with self._lock:
            if not self._bound:
                self.indexer.store.bind_chain(self.indexer.node.chain_id())
                self._bound = True
                self._start_relay()
        return self.indexer.index(job.first, job.last, job.source, job.force)

    def record_failure(self, job: IndexBlocks, reason: str) -> None:
        """Remember `job`'s heights as failed for good (works with the node down)."""
        log.error(
            "blocks %s-%s failed for good: %s",
            job.first,
            job.last,
            reason,
            extra={"block": job.first, "last_block": job.last},
        )
        try:
            self.indexer.store.record_failure(job.heights, reason)
        except ChainpulseError as exc:
            log.error("could not record the failure: %s", exc)

    def _start_relay(self) -> None:
        def loop() -> None:
            while True:
                threading.Event().wait(RELAY_INTERVAL_S)
                try:
                    self.indexer.relay()
                except Exception:  # the database may be away too; try again next round
                    log.exception("outbox relay failed")

        self._relay = threading.Thread(target=loop, name="outbox-relay", daemon=True)
        self._relay.start()

    def close(self) -> None:
        self.indexer.store.dispose()
        self.indexer.bus.client.close()


def build(settings: WorkerSettings) -> JobRunner:
    """One worker process's runner, composed from `settings`."""
    indexer = Indexer(
        # a job that waits longer than this for the budget may be delivered twice
        node=Node.from_settings(settings, max_wait=settings.visibility_timeout / 2),
        store=Store(settings.database_url, sources=settings.price_sources),
        bus=EventBus.from_url(settings.redis_url, settings.stream_key, settings.stream_maxlen),
        max_reorg_depth=settings.max_reorg_depth,
        observer=metrics(),
    )
    return JobRunner(indexer, RetryPolicy(settings.task_max_retries, settings.retry_backoff_max))


_runner: JobRunner | None = None
_runner_lock = threading.Lock()


def current() -> JobRunner:
    """This process's runner (built now if its start-up could not build it)."""
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = build(settings_of(app))
        return _runner


@worker_process_init.connect
def _on_process_init(**_: object) -> None:
    global _runner
    with _runner_lock:
        try:
            _runner = build(settings_of(app))
        except Exception:  # e.g. a malformed DATABASE_URL: the first job reports it
            _runner = None
            log.exception("could not prepare this worker process; its first job will retry")


@worker_process_shutdown.connect
def _on_process_shutdown(**_: object) -> None:
    if _runner is not None:
        _runner.indexer.store.dispose()
