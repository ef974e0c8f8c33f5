"""`chainpulse follow`: follow the chain head, enqueue its blocks in order, repair reorgs.

One follower is active per deployment (`follower.lease`); others wait as standbys and
take over when its lock expires. The active one:

- learns of new heads from `newHeads` over `ETH_WS_URL` when set, and otherwise (or
  while the socket is down or quiet) by polling every `POLL_INTERVAL` seconds;
- follows `CONFIRMATIONS` blocks behind the head (the target), and enqueues every
  height up to the target once, in order, with source `head`. A larger gap (after
  downtime) goes out as `backfill` jobs of `BACKFILL_BATCH` heights, except the newest;
- compares hashes, not heights: its cursor is the last height enqueued together with
  the node's hash for it, so a reorg that keeps the height (or shortens the chain) is
  seen when that hash changes, and `indexer.reorg.repair` runs;
- records each head it reads in Redis (`indexer.seen_head`), for readiness probes;
- every sweep (a few seconds) appends events left in the outbox (a worker that died or
  lost Redis between its commit and the append: they reach the stream even when no
  worker runs), compares the stored tip with the node, re-enqueues
  heights still missing below the cursor (lost jobs, failed blocks, a Redis that lost
  its queue) and reads the node's `safe` and `finalized` blocks (`indexer.finality`),
  announcing each move with `block.finalized`; no repair reaches at or below the
  finalized one;
- at its first start (no start recorded in `chainpulse_meta`) starts at `START_BLOCK`,
  or else at the target then, never at genesis by accident; later starts resume from
  the cursor (Redis, else the highest stored block) and catch up;
- every sweep, follows each Chainlink proxy source to its aggregator and warns about
  feeds that answer without emitting (`indexer.proxies`);
- stops advancing (but stays the lock holder) while a too-deep reorg is recorded.

Every action on the chain is fenced by the lease token: enqueueing through a Lua script
that checks the lock (`follower.queue`), repairs through the database transaction.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
import sqlalchemy as sa

from follower.config import FollowerSettings
from follower.fence import Deposed, claim_fence, fence_floor, fencing
from follower.heads import Header, HeadSubscription
from follower.lease import Lease
from follower.metrics import ChainMetrics, FollowerMetrics
from follower.queue import Cursor, FencedQueue, read_cursor
from indexer import finality, outbox
from indexer.bus import BusUnavailable, EventBus
from indexer.chains import bind
from indexer.errors import ChainpulseError, ReorgTooDeep, RetryableError, RpcError
from indexer.finality import Marks, moved, read_marks
from indexer.proxies import ProxyWatch, SilenceWatch
from indexer.ranges import chunks
from indexer.reorg import Halt, read_halt, repair
from indexer.rpc import Node
from indexer.seen_head import HEAD_KEY, record_head
from indexer.store import Store
from workers.jobs import QUEUE, IndexBlocks

log = logging.getLogger(__name__)

START_KEY = "follow_from"  # chainpulse_meta: the first height the follower indexes
SWEEP_INTERVAL_S = 5.0
SWEEP_SPAN = 2_000  # heights below the cursor that each sweep checks for gaps
MAX_ENQUEUE = 5_000  # heights enqueued per round; a longer catch-up takes several rounds
WS_QUIET_S = 3.0  # poll anyway when the socket sent nothing for this long
BACKOFF_MAX_S = 5.0


class Follower:
    """The follower loop; `follower.process.build` composes one from the settings."""

    def __init__(
        self,
        settings: FollowerSettings,
        node: Node,
        store: Store,
        client: redis.Redis,
        queue: FencedQueue,
        bus: EventBus,
        *,
        metrics: ChainMetrics | None = None,
        sweep_interval: float = SWEEP_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self.node = node
        self.store = store
        self.client = client
        self.queue = queue
        self.bound = False  # the store bound to the node's chain (`chains.bind`)
        # the chain its jobs name: None for the primary (the job form of before chains)
        self.job_chain = None if settings.is_primary else settings.chain_id
        self.lease: Lease = queue.lease
        self.bus = bus
        self.metrics = metrics or FollowerMetrics().chain(settings.chain_name)
        self.sweep_interval = sweep_interval
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.halted: Halt | None = None
        self.start: int | None = None
        self.cursor: Cursor | None = None
        self.finalized: int | None = None
        self.marks: Marks | None = None  # the finality marks as last announced
        self._last_head: int | None = None
        self._next_sweep = 0.0
        self._missing_before: set[int] | None = None
        self._heads: HeadSubscription | None = None
        self._header: Header | None = None
        self._header_lock = threading.Lock()
        self.proxy_watch = ProxyWatch(store, node)
        self.silence = SilenceWatch(store, node, settings.price_silence_warn)

    # Loop -------------------------------------------------------------------------------

    def run(self) -> None:
        """Follow until `stop` is set; as a standby until the lock is free."""
        if self.settings.ws_url:
            self._heads = HeadSubscription(
                self.settings.ws_url, self._on_head, self.settings.rpc_timeout
            ).start()
        backoff = self.settings.poll_interval
        try:
            while not self.stop.is_set():
                if not self.lease.valid():
                    if self.lease.token is not None:
                        self._stand_down("the lease expired")
                    if not self._try_acquire():
                        self.stop.wait(min(0.5, self.settings.follower_lock_ttl / 5))
                        continue
                try:
                    self.step()
                    backoff = self.settings.poll_interval
                except Deposed as exc:
                    self._stand_down(str(exc))
                    continue
                except ReorgTooDeep as exc:
                    self.halted = Halt.now(str(exc))
                    log.critical("follower halted: %s", exc)
                except (RetryableError, redis.RedisError) as exc:
                    self.metrics.round_failed(type(exc).__name__)
                    log.warning("follower round failed, retrying in %.1f s: %s", backoff, exc)
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                self._wait()
        finally:
            if self._heads is not None:
                self._heads.stop()
            self.lease.release()
            self.metrics.role(None)

    def _wait(self) -> None:
        if self.stop.is_set():
            return
        timeout = self.settings.poll_interval
        heads = self._heads
        if heads is not None and heads.connected:
            quiet = time.monotonic() - heads.last_message
            timeout = max(timeout, WS_QUIET_S - quiet) if quiet < WS_QUIET_S else timeout
        timeout = min(timeout, max(self._next_sweep - time.monotonic(), 0.0))
        self.wake.wait(timeout)
        self.wake.clear()

    def _on_head(self, header: Header) -> None:
        with self._header_lock:
            self._header = header
        self.wake.set()

    def _try_acquire(self) -> bool:
        try:
            if not self.bound:  # `process.run` binds it first, unless its node was away
                bind(self.store, self.node, self.settings)
                self.bound = True
            taken = self.lease.acquire(fence_floor(self.store))
        except (ChainpulseError, redis.RedisError) as exc:
            log.warning("cannot take the follower lock yet: %s", exc)
            return False
        if not taken:
            return False
        log.info("follower active with token %s", self.lease.token)
        self.metrics.role(self.lease.token)
        self.cursor = None
        self.start = None
        self.halted = None
        self._last_head = None
        self._missing_before = None
        self._next_sweep = 0.0
        return True

    def _stand_down(self, why: str) -> None:
        log.error("follower stands down: %s", why)
        self.lease.release()
        self.metrics.role(None)
        self.metrics.lost_head()
        self.cursor = None

    # One round ----------------------------------------------------------------------------

    def step(self) -> None:
        """One round: read the head, detect reorgs, enqueue new heights, sweep if due."""
        token = self.lease.token
        if token is None or not self.lease.valid():
            raise Deposed("the follower lease is not held")
        if self.start is None:
            self._resume(token)
        if self.halted is None:
            self._follow(token)
        if time.monotonic() >= self._next_sweep:
            self._sweep(token)

    def _follow(self, token: int) -> None:
        head = self._head()
        number = int(head["number"], 16)
        self._last_head = number
        record_head(self.client, number, self.settings.chain_key(HEAD_KEY))
        self.metrics.saw_head(number, int(head["timestamp"], 16))
        target = number - self.settings.confirmations
        assert self.start is not None
        if target < self.start:
            return
        header = head if target == number else self.node.block_header(target)
        if header is None:
            return  # a lagging replica; next round
        self._advance(token, target, header["hash"].lower(), header["parentHash"].lower())

    def _head(self) -> Header:
        with self._header_lock:
            header, self._header = self._header, None
        heads = self._heads
        if header is not None and heads is not None and heads.connected:
            return header
        polled = self.node.block_header("latest")
        if polled is None:
            raise RpcError("the node has no latest block")
        return polled

    def _advance(self, token: int, target: int, hash_: str, parent: str) -> None:
        cursor = self.cursor
        assert cursor is not None
        if cursor.number == target and cursor.hash == hash_:
            return
        if not (cursor.number + 1 == target and cursor.hash == parent):
            # Not a plain extension: did the block under the cursor change?
            if cursor.number <= target and cursor.hash:
                known = self.node.block_hashes([cursor.number])[cursor.number]
            else:
                known = None  # the chain got shorter than the cursor
            if cursor.hash and known != cursor.hash:
                log.warning(
                    "block %d changed from %s to %s: reorg",
                    cursor.number,
                    cursor.hash,
                    known,
                    extra={"block": cursor.number},
                )
                self._repair(token)
                self.cursor = cursor = Cursor(min(cursor.number, target), "")
        if cursor.number >= target:
            self._enqueue([], Cursor(target, hash_))
            self.cursor = Cursor(target, hash_)
            return
        if target - cursor.number > MAX_ENQUEUE:
            last = cursor.number + MAX_ENQUEUE  # a long catch-up: the rest next round
            self._enqueue(self._jobs(cursor.number + 1, last), Cursor(last, ""))
            self.cursor = Cursor(last, "")
            self.wake.set()
            return
        self._enqueue(self._jobs(cursor.number + 1, target), Cursor(target, hash_))
        self.cursor = Cursor(target, hash_)

    def _enqueue(self, jobs: list[IndexBlocks], cursor: Cursor | None) -> None:
        self.queue.enqueue(jobs, cursor)
        for job in jobs:
            self.metrics.queued(job.source, job.last - job.first + 1)

    def _jobs(self, first: int, last: int) -> list[IndexBlocks]:
        """Heights first..last as jobs: the newest BACKFILL_BATCH one by one as `head`,
        anything older as `backfill` runs."""
        tail = max(first, last - self.settings.backfill_batch + 1)
        jobs = [
            IndexBlocks(a, b, "backfill", chain=self.job_chain)
            for a, b in chunks(range(first, tail), self.settings.backfill_batch)
        ]
        return jobs + [
            IndexBlocks(n, n, "head", chain=self.job_chain) for n in range(tail, last + 1)
        ]

    def _repair(self, token: int) -> None:
        event = repair(
            self.store,
            self.node,
            self.settings.max_reorg_depth,
            finalized=self.finalized,
            claim=fencing(self.store, token),
            source="head",
        )
        if event is not None:
            self.metrics.reorged(event)
            self._relay()

    def _relay(self) -> None:
        try:
            outbox.relay(self.store, self.bus)
        except BusUnavailable as exc:
            log.warning("events wait in the outbox: %s", exc)

    # State -------------------------------------------------------------------------------

    def _resume(self, token: int) -> None:
        """Where to continue: the recorded start and the cursor (Redis, else the database)."""
        stored_start = self.store.get_meta(START_KEY)
        top = self.store.top()
        start = self.settings.start_block
        if stored_start is None and start is None:
            # the target at first start, even over backfilled blocks
            start = max(self.node.head() - self.settings.confirmations, 0)
        with self.store.writing() as conn:
            # every token taken is recorded: if Redis loses its counter, the next holder's
            # token is still above every token that ever acted (`Lease.acquire`'s floor)
            claim_fence(self.store, conn, token)
            if stored_start is None and self.store.get_meta(START_KEY, conn) is None:
                self.store.set_meta(conn, START_KEY, str(start))
        stored_start = self.store.get_meta(START_KEY)
        assert stored_start is not None
        self.start = int(stored_start)
        cursor = read_cursor(self.client, self.queue.cursor_key)
        if top is not None and (cursor is None or cursor.number < top[0]):
            cursor = Cursor(*top)
        if cursor is None or cursor.number < self.start - 1:
            cursor = Cursor(self.start - 1, "")
        self.cursor = cursor
        self.halted = read_halt(self.store)
        self._recorded_marks()
        log.info("following from %d; cursor at %d", self.start, cursor.number)

    def _sweep(self, token: int) -> None:
        self._next_sweep = time.monotonic() + self.sweep_interval
        self._relay()  # events a worker committed but could not append (it may be gone)
        self.halted = read_halt(self.store)
        if self.halted is not None:
            log.critical("indexing is halted: %s", self.halted.reason)
            self._last_head = None  # not read while halted: no finality from an old head
            return
        self._finality(token)
        top = self.store.top()
        if top is not None and self.node.block_hashes([top[0]])[top[0]] != top[1]:
            log.warning(
                "stored tip %d is no longer the node's block: reorg",
                top[0],
                extra={"block": top[0]},
            )
            self._repair(token)
        cursor = self.cursor
        assert cursor is not None and self.start is not None
        self._watch_feeds(token, cursor.number)
        first_sweep = self._missing_before is None
        lo = self.start if first_sweep else max(self.start, cursor.number - SWEEP_SPAN)
        missing = set(self._missing(lo, cursor.number))
        due = missing if first_sweep else missing & (self._missing_before or set())
        if due and not first_sweep and self.client.llen(QUEUE) > 0:
            due = set()  # jobs are still queued; look again next sweep
        self._missing_before = missing
        due = set(sorted(due)[:MAX_ENQUEUE])
        if due:
            log.info("re-enqueueing %d missing heights below the cursor", len(due))
            jobs = [
                IndexBlocks(a, b, "backfill", chain=self.job_chain)
                for a, b in chunks(sorted(due), self.settings.backfill_batch)
            ]
            self._enqueue(jobs, None)

    def _finality(self, token: int) -> None:
        """Read the chain's safe and finalized marks; record and announce a move
        (`block.finalized`, fenced like every other write of the follower)."""
        head = self._last_head if self._last_head is not None else self.node.head()
        marks = read_marks(self.node, head, self.settings.finality_depth)
        self._recorded_marks()  # as stored: `--clear-halt` in another process forgets them
        new = moved(self.marks, marks) if marks is not None else None
        if new is not None:
            with self.store.writing() as conn:
                claim_fence(self.store, conn, token)
                self.store.set_meta(conn, finality.KEY, new.to_json())
                self.store.add_to_outbox(conn, new.event(self.store.chain))
            self._use_marks(new)
            self._relay()

    def _recorded_marks(self) -> None:
        recorded = self.store.get_meta(finality.KEY)
        self._use_marks(Marks.from_json(recorded) if recorded is not None else None)

    def _use_marks(self, marks: Marks | None) -> None:
        self.marks = marks
        # no repair reaches at or below it: a stored block there that changed is a halt
        self.finalized = marks.finalized.number if marks is not None else None
        if marks is None:
            self.metrics.marks(None, None)
        else:
            self.metrics.marks(marks.safe.number, marks.finalized.number)

    def _watch_feeds(self, token: int, target: int) -> None:
        """Follow each Chainlink proxy to its aggregator, and warn about silent feeds."""
        try:
            self.store.prepare_prices(self.node)
            if self.proxy_watch.check(target, claim=fencing(self.store, token)):
                self._relay()  # the answers priced at the switch
            self.silence.check()
        except (ChainpulseError, sa.exc.SQLAlchemyError) as exc:
            log.warning("price feeds not checked this sweep: %s", exc)

    def _missing(self, lo: int, hi: int) -> list[int]:
        """Missing heights in [lo, hi]; over a long range, the first MAX_ENQUEUE of them."""
        if hi < lo:
            return []
        if hi - lo <= 10 * SWEEP_SPAN:
            return self.store.missing(lo, hi)
        summary = self.store.summary()  # the first 100 gaps; later sweeps find the rest
        lowest, highest = summary.lowest, summary.highest
        if lowest is None or highest is None:
            return list(range(lo, min(hi, lo + MAX_ENQUEUE - 1) + 1))
        out = list(range(lo, min(lowest, lo + MAX_ENQUEUE)))
        out += [n for a, b in summary.gaps for n in range(max(a, lo), min(b, hi) + 1)]
        out += range(max(highest + 1, lo), min(hi, highest + MAX_ENQUEUE) + 1)
        return out[:MAX_ENQUEUE]
