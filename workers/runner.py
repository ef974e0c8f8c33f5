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

import redis
from celery.signals import worker_process_init, worker_process_shutdown
from celery.utils.time import get_exponential_backoff_interval

from indexer.bus import EventBus
from indexer.chains import bind
from indexer.errors import ChainpulseError, RetryableError
from indexer.event_sync import decode_range
from indexer.events import BlockIndexed
from indexer.pipeline import Indexer
from indexer.rpc import Node
from indexer.store import Store
from workers.app import app, default_concurrency, settings_of
from workers.config import WorkerSettings
from workers.jobs import DecodeLogs, IndexBlocks
from workers.main import metrics
from workers.slots import ChainSlots

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


class UnknownChain(RetryableError):
    """A job names a chain this worker's chains file does not list (during a rolling
    deploy that adds a chain, a worker of the new file takes it on a retry)."""


@dataclass
class ChainIndexer:
    """One chain's indexer in this process, bound to its chain on its first job."""

    settings: WorkerSettings
    indexer: Indexer
    bound: bool = False


class JobRunner:
    """Runs `IndexBlocks` jobs in one worker process, for every chain of the settings."""

    def __init__(
        self, chains: list[ChainIndexer], retry: RetryPolicy, slots: ChainSlots | None = None
    ) -> None:
        self.chains = {
            c.settings.chain_id if not c.settings.is_primary else None: c for c in chains
        }
        self.retry = retry
        self.slots = slots  # with two chains or more (workers.slots)
        self._lock = threading.Lock()
        self._relay: threading.Thread | None = None

    @property
    def indexer(self) -> Indexer:
        """The primary chain's indexer."""
        return self.chains[None].indexer

    def run(self, job: IndexBlocks) -> list[BlockIndexed]:
        """Index `job`'s heights on its chain; the node's chain id is checked against the
        chains file and the database on the chain's first job (a worker on the wrong
        node fails that job, not its start)."""
        chain = self._chain(job)
        with self._lock:
            if not chain.bound:
                bind(chain.indexer.store, chain.indexer.node, chain.settings)
                chain.bound = True
                self._start_relay()
        return chain.indexer.index(job.first, job.last, job.source, job.force)

    def decode(self, job: DecodeLogs) -> int:
        """Decode `job`'s piece of its contracts' history from the stored logs; the
        contracts its chain's file names (one since removed is skipped)."""
        chain = self._chain(job)
        named = [c for c in chain.settings.contracts if c.name in job.contracts]
        if not named:
            return 0
        return decode_range(chain.indexer.store, named, job.first, job.last)

    def chain_name(self, job: IndexBlocks) -> str:
        """The name of `job`'s chain, for its log lines (its id when unknown here)."""
        try:
            return self._chain(job).settings.chain_name
        except UnknownChain:
            return str(job.chain)

    def take_slot(self, worker: str, job: IndexBlocks, job_id: str) -> bool:
        """Whether `job` may run now: its chain holds fewer than its share of this
        worker's processes (always, with one chain)."""
        return self.slots is None or self.slots.take(worker, job.chain, job_id)

    def give_slot(self, worker: str, job: IndexBlocks, job_id: str) -> None:
        if self.slots is not None:
            self.slots.give_back(worker, job.chain, job_id)

    def _chain(self, job: IndexBlocks | DecodeLogs) -> ChainIndexer:
        primary = self.chains[None].settings.chain_id
        found = self.chains.get(None if job.chain == primary else job.chain)
        if found is None:
            known = ", ".join(
                str(c.settings.chain_id or "the primary") for c in self.chains.values()
            )
            raise UnknownChain(
                f"job names chain {job.chain}, not in this worker's chains ({known})"
            )
        return found

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
            self._chain(job).indexer.store.record_failure(job.heights, reason)
        except ChainpulseError as exc:
            log.error("could not record the failure: %s", exc)

    def _start_relay(self) -> None:
        if self._relay is not None:
            return

        def loop() -> None:
            while True:
                threading.Event().wait(RELAY_INTERVAL_S)
                for chain in list(self.chains.values()):
                    if not chain.bound:
                        continue
                    try:
                        chain.indexer.relay()
                    except Exception:  # the database may be away too; try again next round
                        log.exception("outbox relay failed")

        self._relay = threading.Thread(target=loop, name="outbox-relay", daemon=True)
        self._relay.start()

    def close(self) -> None:
        for chain in self.chains.values():
            chain.indexer.store.dispose()
            chain.indexer.bus.client.close()


def build(settings: WorkerSettings) -> JobRunner:
    """One worker process's runner, composed from `settings`: an indexer per chain."""
    chains = []
    for view in settings.chains():
        indexer = Indexer(
            # a job that waits longer than this for the budget may be delivered twice
            node=Node.from_settings(view, max_wait=view.visibility_timeout / 2),
            store=Store(
                view.database_url,
                sources=view.price_sources,
                chain_id=view.chain_id,
                contracts=view.contracts,
            ),
            bus=EventBus.from_url(view.redis_url, view.stream_key, view.stream_maxlen),
            max_reorg_depth=view.max_reorg_depth,
            observer=metrics().for_chain(view.chain_name),
        )
        chains.append(ChainIndexer(view, indexer))
    # the pool's size: WORKER_CONCURRENCY, or `--concurrency` (workers.main)
    limit = settings.job_slots(int(app.conf.worker_concurrency or default_concurrency()))
    slots = None
    if limit is not None:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        slots = ChainSlots(client, limit, hold=settings.visibility_timeout)
    return JobRunner(
        chains, RetryPolicy(settings.task_max_retries, settings.retry_backoff_max), slots
    )


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
        _runner.close()
