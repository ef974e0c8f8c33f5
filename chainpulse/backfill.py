"""`chainpulse backfill FROM TO [--wait] [--force]`: enqueue jobs, then watch them finish.

Without --force only heights that are not stored yet are enqueued. Jobs cover up to
BACKFILL_BATCH consecutive heights each (one round trip and one transaction per job).
With --wait, a progress line shows blocks/s and an ETA; the command exits 0 when every
block is indexed and 1, naming them, when some failed for good. If no worker consumes
the `blocks` queue it says so within seconds.

The Redis broker can lose a job: kombu pops it (BRPOP) and only then records it as
unacknowledged, so a worker killed between the two drops it (kombu#305). While waiting,
progress that stalls with no job queued or held by any worker means that happened,
and the heights still not indexed are enqueued again (jobs are idempotent).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO

import redis
from celery import Celery
from kombu.transport.redis import Channel

from indexer.chains import bind
from indexer.config import IndexerSettings
from indexer.errors import BadRange, ConfigError, DatabaseBusy
from indexer.ranges import chunks, describe, parse_range
from indexer.rpc import Node
from indexer.store import Failure, Store
from indexer.urls import mask_url
from workers.jobs import QUEUE, TASK, IndexBlocks, broker

NO_WORKER_TIMEOUT_S = 60.0
POLL_S = (0.1, 2.0)  # between progress counts: at least, at most
POLL_COST = 0.05  # the counts may take this share of the CLI's time (large ranges)
WORKER_CHECK_S = 2.5  # between checks while no worker answers
STALL_S = 5.0  # without progress for this long, check that a worker is there
LOST_S = 5.0  # without progress and with no job queued or held this long: jobs were lost


def check_redis(url: str) -> None:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL {mask_url(url)} is malformed: {exc}") from None
    try:
        client.ping()
    except redis.RedisError as exc:
        raise DatabaseBusy(f"Redis at {mask_url(url)} is unreachable: {exc}") from None
    finally:
        client.close()


def run_backfill(
    settings: IndexerSettings,
    start: str,
    end: str,
    wait: bool,
    force: bool,
    out: TextIO = sys.stderr,
) -> int:
    first, last = parse_range(start, end)
    node = Node.from_settings(settings)
    head = node.head()
    if last > head:
        raise BadRange(f"TO ({last}) is beyond the node's head ({head})")
    store = Store(settings.database_url)
    app = broker(settings.redis_url)
    chain = None if settings.is_primary else settings.chain_id  # the primary's: no field
    try:
        store.check_schema()
        # Refuse here, not in every job: a worker cannot even record a job it refuses.
        bind(store, node, settings)
        check_redis(settings.redis_url)
        numbers = list(range(first, last + 1)) if force else store.missing(first, last)
        started = datetime.now(UTC) - timedelta(seconds=1)

        def enqueue(numbers: list[int]) -> int:
            """Jobs of up to BACKFILL_BATCH consecutive blocks; returns how many."""
            jobs = [
                IndexBlocks(lo, hi, "backfill", force, chain)
                for lo, hi in chunks(numbers, settings.backfill_batch)
            ]
            for job in jobs:
                app.send_task(TASK, kwargs=job.to_kwargs(), queue=QUEUE)
            return len(jobs)

        jobs = enqueue(numbers)
        skipped = (last - first + 1) - len(numbers)
        print(
            f"enqueued {len(numbers)} blocks in {jobs} jobs"
            + (f" ({skipped} already indexed)" if skipped else ""),
            file=out,
        )
        if not wait or not numbers:
            return 0
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
        try:
            progress = BackfillProgress(store, first, last, numbers, started, force, out)
            return progress.watch(
                lambda: jobs_outstanding(client), lambda: workers_on_queue(app), enqueue
            )
        finally:
            client.close()
    finally:
        app.close()
        store.dispose()


@dataclass
class BackfillProgress:
    store: Store
    first: int
    last: int
    numbers: list[int]
    started: datetime
    force: bool
    out: TextIO

    def watch(
        self,
        outstanding: Callable[[], int],
        consumed: Callable[[], bool],
        requeue: Callable[[list[int]], object],
    ) -> int:
        """Show progress until every height is indexed or failed; the exit code.

        `outstanding` counts jobs queued or held by workers; `consumed` says whether a
        worker consumes the queue; `requeue` enqueues heights again when progress stalls
        with no job outstanding (see the module's docstring).
        """
        total = len(self.numbers)
        already = (self.last - self.first + 1) - total
        t0 = time.monotonic()
        # Whether a worker consumes the queue is asked at the start and again whenever
        # progress stalls (the broadcast costs its whole timeout, so not every round).
        next_worker_check = t0
        no_worker_since: float | None = None
        done = failed = 0
        last_count = -1
        progressed = t0
        lost_since: float | None = None
        warned = False
        tty = self.out.isatty()
        last_print = 0.0
        while done + failed < total:
            now = time.monotonic()
            if now >= next_worker_check:
                next_worker_check = now + WORKER_CHECK_S
                if consumed():
                    no_worker_since, warned = None, False
                    next_worker_check = now + STALL_S
                elif no_worker_since is None:
                    no_worker_since = now  # a worker may be starting; say so on the next check
                else:
                    if not warned:
                        print(
                            f"\nno worker is consuming the '{QUEUE}' queue; start one with: "
                            f"celery -A workers worker -Q {QUEUE}",
                            file=self.out,
                        )
                        warned = True
                    if now - no_worker_since > NO_WORKER_TIMEOUT_S:
                        print(
                            f"gave up after {NO_WORKER_TIMEOUT_S:.0f} s; the jobs stay queued",
                            file=self.out,
                        )
                        return 1
            counted = time.monotonic()
            done, failed = self.store.count_done(
                self.first, self.last, self.started, reindexed_only=self.force
            )
            poll = min(max((time.monotonic() - counted) / POLL_COST, POLL_S[0]), POLL_S[1])
            if not self.force:
                done -= already
            if done + failed != last_count:
                last_count = done + failed
                next_worker_check = max(next_worker_check, now + STALL_S)
                progressed, lost_since = now, None
            elif now - progressed >= LOST_S and done + failed < total:
                # Seen twice, a second apart: a job between BRPOP and its unacked record
                # is briefly in neither place.
                if outstanding() > 0:
                    lost_since = None
                elif lost_since is None:
                    lost_since = now
                elif now - lost_since >= 1.0:
                    heights = self.unfinished()
                    requeue(heights)
                    print(
                        f"\nno job holds {describe(heights)} any more (a worker died "
                        "while taking it); enqueued again",
                        file=self.out,
                    )
                    progressed, lost_since = now, None
            elapsed = max(time.monotonic() - t0, 1e-6)
            if tty or time.monotonic() - last_print >= 5 or done + failed >= total:
                self.render(done, failed, total, elapsed, tty)
                last_print = time.monotonic()
            if done + failed < total:
                time.sleep(poll)
        if tty:
            print(file=self.out)
        elapsed = time.monotonic() - t0
        if failed:
            failures = self.failures()
            print(f"{failed} blocks failed: {describe(f.number for f in failures)}", file=self.out)
            print(f"first error: {failures[0].error}", file=self.out)
            return 1
        print(
            f"indexed {done} blocks in {elapsed:.1f} s ({done / max(elapsed, 1e-6):.1f} blocks/s)",
            file=self.out,
        )
        return 0

    def unfinished(self) -> list[int]:
        """This run's heights that are neither indexed during it nor failed."""
        if self.force:
            fresh = self.store.indexed_since(self.first, self.last, self.started)
        else:
            fresh = set(self.store.stored_hashes(self.first, self.last))
        failed = {f.number for f in self.failures()}
        return [n for n in self.numbers if n not in fresh and n not in failed]

    def failures(self) -> list[Failure]:
        """Blocks in the range whose job failed for good during this run.

        Older entries are an earlier run's: this run's jobs may still index those blocks.
        """
        return [
            f for f in self.store.failures(self.first, self.last) if f.failed_at >= self.started
        ]

    def render(self, done: int, failed: int, total: int, elapsed: float, tty: bool) -> None:
        rate = done / elapsed
        left = total - done - failed
        eta = f"{int(left / rate) // 60}:{int(left / rate) % 60:02d}" if rate > 0 else "--:--"
        width = 30
        filled = int(width * (done + failed) / total)
        bar = "#" * filled + "-" * (width - filled)
        line = (
            f"[{bar}] {done + failed}/{total} blocks {100 * (done + failed) // total}% "
            f"| {rate:.1f} blocks/s | ETA {eta}" + (f" | failed {failed}" if failed else "")
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=self.out, flush=True)


def jobs_outstanding(client: redis.Redis) -> int:
    """Jobs on the `blocks` queue plus jobs a worker took and has not acknowledged."""
    with client.pipeline(transaction=False) as pipe:
        pipe.llen(QUEUE)
        pipe.hlen(Channel.unacked_key)
        queued, held = pipe.execute()
    return int(queued) + int(held)


def workers_on_queue(app: Celery, timeout: float = 1.5) -> bool:
    """True when at least one live worker consumes the `blocks` queue."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    return any(q.get("name") == QUEUE for queues in replies.values() for q in queues)
