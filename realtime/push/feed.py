"""From stream events to pushes: the `new-block` sequence, reorgs, prices, and the
catch-up of reconnecting clients (resume).

Every live client is in the private room `~live` (not a channel anyone can
subscribe to); a resuming client joins it only once it has caught up, so it sees
each height once and none is missing. Pushes run on the stream reader's green
thread and never yield while fanning out; a catch-up joins `~live` in a step that
does not yield either, after it has replayed what was pushed while it read the
database (kept in `ring`). Broadcasts are encoded once per push and sent to this
process's clients only, the `ignore_queue=True` equivalent: every process reads the
stream itself.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from indexer import queries
from indexer.events import BlockIndexed, BlockRef, BlockReorged, Event, PriceUpdated
from realtime import protocol
from realtime.config import RealtimeSettings
from realtime.metrics import Metrics
from realtime.push.sequencer import BlockSequencer
from realtime.reads import Database
from realtime.transport.fanout import Encoded, Fanout, Payload, Signal

log = logging.getLogger(__name__)

LIVE = "~live"


NO_PRICE_CAP = 10_000  # tokens remembered as having no price
# seconds a gap in the heights waits for the stream before the database is asked (the
# stream usually fills it within milliseconds: workers commit out of order)
FILL_AFTER = 1.0


def _when(event: PriceUpdated) -> tuple[int, int]:
    """Where a price sits in time (docs/prices.md): the block's timestamp and number for
    chain prices, the publish time for manual ones."""
    if event.blockNumber is None or event.blockTimestamp is None:
        return (event.publishedAt, -1)
    return (event.blockTimestamp * 1000, event.blockNumber)


class _Read:
    """A snapshot read under way: `done` is set once `row` holds its answer."""

    __slots__ = ("done", "row")

    def __init__(self, done: Signal) -> None:
        self.done = done
        self.row: queries.PriceRow | None = None


class Feed:
    def __init__(
        self,
        fanout: Fanout,
        settings: RealtimeSettings,
        db: Database | None,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fanout = fanout
        self.db = db
        self.metrics = metrics
        self.clock = clock
        self.push_window = settings.push_window
        self.resume_window = settings.resume_window
        self.sequencer = BlockSequencer(
            window=settings.push_window, gap_timeout=settings.block_gap_timeout
        )
        self.ring: deque[tuple[int, str, Encoded]] = deque(
            maxlen=max(256, 4 * settings.push_window)
        )
        self.ring_seq = 0  # sequence number of the last pushed all-client message
        self.prices: dict[str, PriceUpdated] = {}
        # Tokens the database had no price for when a subscriber asked: later subscribers
        # skip the read (a thread hop each) until a price event or a reorg says otherwise.
        self.no_price: set[str] = set()
        self.price_changes = 0  # counts price events and reorgs, to spot one during a read
        self.waiting: dict[int, list[str]] = {}  # lastBlock ahead of us -> sids
        self._reads: dict[str, _Read] = {}  # snapshot reads under way, by token
        self._filling = False  # a read of missing blocks is under way

    # stream side --------------------------------------------------------------------

    def start_at(self, number: int | None) -> None:
        """Blocks up to `number` (the database head at start-up) count as pushed."""
        if number is not None:
            self.sequencer.last = number
            self.sequencer.highest = number

    def handle(self, event: Event) -> None:
        now = self.clock()
        if isinstance(event, BlockIndexed):
            self._push(self.sequencer.block(event, now))
        elif isinstance(event, BlockReorged):
            self._push(self.sequencer.reorg(event, now))
        elif isinstance(event, PriceUpdated):
            self.push_price(event)

    def tick(self) -> None:
        now = self.clock()
        skipped = self.sequencer.skipped
        self._push(self.sequencer.tick(now))
        if self.sequencer.skipped != skipped:
            self.metrics.blocks_skipped.inc(self.sequencer.skipped - skipped)
            log.warning("gave up on %d missing height(s)", self.sequencer.skipped - skipped)
        gap = self.sequencer.gap(now, min(FILL_AFTER, self.sequencer.gap_timeout / 2))
        if gap is not None:
            self._start_fill(gap[0] - 1, gap[1])

    def catch_up(self) -> None:
        """The stream came back after an outage, in which Redis may have lost entries
        this process had not read (a restart loses the stream): push what the database
        holds beyond what was pushed, blocks and prices, in a green thread of its own."""
        last = self.sequencer.last
        if last is not None:
            self._start_fill(last, last + self.push_window, prices=True)

    def _start_fill(self, after: int, up_to: int, prices: bool = False) -> None:
        """`_fill` in a green thread of its own, unless one runs already."""
        if self.db is not None and not self._filling:
            self._filling = True
            self.fanout.spawn(lambda: self._fill(after, up_to, prices))

    def _fill(self, after: int, up_to: int, prices: bool = False) -> None:
        """Blocks `after < n <= up_to` from the database into the sequence (see
        `BlockSequencer.fill`), and with `prices` each token's latest price."""
        assert self.db is not None
        try:
            rows = self.db.read(queries.blocks_between, after, up_to)
            before = self.sequencer.filled
            self._push(
                self.sequencer.fill([protocol.indexed_from_row(r) for r in rows], self.clock())
            )
            if self.sequencer.filled != before:
                filled = self.sequencer.filled - before
                self.metrics.blocks_filled.inc(filled)
                log.warning("pushed %d block(s) from the database: the stream lost them", filled)
            if prices:
                for row in self.db.read(queries.latest_prices):
                    self._catch_up_price(protocol.price_event_from_row(row))
        except Exception as exc:  # noqa: BLE001 - the stream, or the gap timeout, goes on
            log.warning("reading missed blocks from the database failed: %s", exc)
        finally:
            self._filling = False

    def _catch_up_price(self, event: PriceUpdated) -> None:
        """Push a stored price that is newer than what this process last told anyone
        about its token (its update was lost with the stream)."""
        known = self.prices.get(event.token)
        if known is None:
            if not self.fanout.has_members(f"price:{event.token}"):
                return  # nobody to tell; a subscriber gets it as its snapshot
        elif _when(event) <= _when(known):
            return
        self.push_price(event)

    def _push(self, actions: list[BlockIndexed | BlockReorged]) -> None:
        for action in actions:
            if isinstance(action, BlockIndexed):
                pkt = self.fanout.encode("new-block", protocol.new_block(action))
                self._remember("new-block", pkt)
                self.broadcast(LIVE, pkt, "new-block")
                self._release_waiting(action.blockNumber)
            else:
                pkt = self.fanout.encode("reorg", protocol.reorg(action))
                self._remember("reorg", pkt)
                self.broadcast(LIVE, pkt, "reorg")
                self._forget_prices_after(action.commonAncestor.number)
                for height in [h for h in self.waiting if h > action.commonAncestor.number]:
                    for sid in self.waiting.pop(height):
                        self.send(sid, pkt, "reorg")
                        self.join_live(sid)

    def snapshot(self, token: str) -> PriceUpdated | None:
        """`token`'s latest price: the last one pushed, else the database's (a read that
        yields to other green threads), else None. Best effort: a failed read is None.

        One read per token at a time: the subscribers that ask while it runs wait for
        its row (a reconnect storm after a restart would otherwise queue one read per
        subscriber, and reads run one at a time)."""
        known = self.prices.get(token)
        if known is not None or self.db is None or token in self.no_price:
            return known
        read = self._reads.get(token)
        if read is not None:
            read.done.wait()
        else:
            read = self._reads[token] = _Read(self.fanout.signal())
            changes = self.price_changes
            try:
                read.row = self.db.read(queries.latest_price, token)
                if read.row is None and changes == self.price_changes:
                    self.note_no_price(token)
            except Exception as exc:  # noqa: BLE001 - a snapshot is best effort
                log.warning("price snapshot for %s unavailable: %s", token, exc)
            finally:
                del self._reads[token]
                read.done.set()
        # a live update that arrived during the read is newer than the row; the row is
        # what subscribers are told, so an older update must not be pushed after it
        known = self.prices.get(token)
        if known is None and read.row is not None:
            known = self.prices[token] = protocol.price_event_from_row(read.row)
        return known

    def note_no_price(self, token: str) -> None:
        if len(self.no_price) >= NO_PRICE_CAP:
            self.no_price.clear()  # bounded: many distinct unknown tokens cost reads, not memory
        self.no_price.add(token)

    def push_price(self, event: PriceUpdated) -> None:
        """Push `event` to its room, unless it is history: a backfilled price older than
        PUSH_WINDOW blocks, or one older than the last price pushed for the token. The
        price a reorg brings back (`reorgId`) passes both: it is older by nature."""
        self.price_changes += 1
        self.no_price.discard(event.token)
        if event.reorgId is None:
            if (
                event.blockHash is not None
                and event.blockNumber is not None
                and self.sequencer.orphaned(event.blockNumber, event.blockHash)
            ):
                return  # a worker's late commit of a block a reorg removed
            highest = self.sequencer.highest
            if (
                event.blockNumber is not None
                and highest is not None
                and event.blockNumber < highest - self.push_window
            ):
                return  # a backfilled price is history, not an update
            last = self.prices.get(event.token)
            if last is not None and _when(event) < _when(last):
                return  # a worker committed an older block after a newer one
        if event.price is None:
            self.prices.pop(event.token, None)  # the reorg left no price
        else:
            self.prices[event.token] = event
        pkt = self.fanout.encode("price-update", protocol.price_update(event))
        self.broadcast(f"price:{event.token}", pkt, "price-update")

    def _forget_prices_after(self, height: int) -> None:
        self.price_changes += 1
        self.no_price.clear()
        for token in [
            t
            for t, p in self.prices.items()
            if p.blockNumber is not None and p.blockNumber > height
        ]:
            del self.prices[token]  # the database has the price the reorg brought back

    def _remember(self, event: str, pkt: Encoded) -> None:
        self.ring_seq += 1
        self.ring.append((self.ring_seq, event, pkt))

    def _since(self, seq: int) -> list[tuple[int, str, Encoded]] | None:
        """Messages pushed after `seq`, or None when some were already evicted."""
        if self.ring_seq == seq:
            return []
        if not self.ring or self.ring[0][0] > seq + 1:
            return None
        return [entry for entry in self.ring if entry[0] > seq]

    def _release_waiting(self, height: int) -> None:
        if self.waiting:
            for h in [h for h in self.waiting if h <= height]:
                for sid in self.waiting.pop(h):
                    self.join_live(sid)

    # client side --------------------------------------------------------------------

    def broadcast(self, room: str, pkt: Encoded, event: str) -> int:
        sent = self.fanout.broadcast(room, pkt)
        if sent:
            self.metrics.push(event, sent)
        return sent

    def send(self, sid: str, pkt: Encoded, event: str) -> None:
        if self.fanout.send(sid, pkt):
            self.metrics.push(event)

    def emit(self, sid: str, event: str, data: Payload) -> None:
        self.send(sid, self.fanout.encode(event, data), event)

    def join_live(self, sid: str) -> None:
        if self.fanout.connected(sid):
            self.fanout.join(sid, LIVE)

    def forget(self, sid: str) -> None:
        for height in [h for h, sids in self.waiting.items() if sid in sids]:
            self.waiting[height].remove(sid)
            if not self.waiting[height]:
                del self.waiting[height]

    def resume(self, sid: str, last_block: int, last_hash: str | None) -> None:
        """Catch `sid` up from `last_block`, then make it live; runs in its own green
        thread. Order: (a `reorg` if `last_hash` is no longer canonical), the missed
        `new-block`s from the database, what was pushed meanwhile, then live."""
        try:
            self._resume(sid, last_block, last_hash)
        except Exception:
            log.exception("resume failed", extra={"client": sid})
            self.emit(sid, "exception", protocol.exception(protocol.RESUME_FAILED))
            self.join_live(sid)

    def _resume(self, sid: str, last_block: int, last_hash: str | None) -> None:
        start = last_block
        if last_hash is not None and self.db is not None:
            start = self._reorg_first(sid, last_block, last_hash)
        for _attempt in range(8):
            if not self.fanout.connected(sid):
                return
            frontier, seq = self.sequencer.last, self.ring_seq
            if frontier is None or start == frontier:
                self.join_live(sid)
                return
            if start > frontier:
                if start - frontier > self.push_window:
                    self.join_live(sid)  # a height we have no reason to wait for
                else:
                    self.waiting.setdefault(start, []).append(sid)
                return
            if frontier - start > self.resume_window:
                self.emit(sid, "exception", protocol.exception(protocol.RESUME_WINDOW_EXCEEDED))
                self.join_live(sid)
                return
            rows = self.db.read(queries.blocks_between, start, frontier) if self.db else []
            if not self.fanout.connected(sid):
                return
            for row in rows:
                self.emit(sid, "new-block", protocol.new_block(protocol.indexed_from_row(row)))
            start = frontier
            missed = self._since(seq)
            if missed is None:
                continue  # more was pushed than the ring holds: read again from `start`
            for _seq, event, pkt in missed:
                self.send(sid, pkt, event)
            self.join_live(sid)
            return
        self.join_live(sid)

    def _reorg_first(self, sid: str, last_block: int, last_hash: str) -> int:
        assert self.db is not None
        row = self.db.read(queries.block_by_number, last_block)
        if row is None or row.hash == last_hash.lower():
            return last_block
        found = self.db.read(queries.reorg_removing, last_block, last_hash)
        if found is not None:
            event = BlockReorged(
                depth=found.depth,
                commonAncestor=BlockRef(found.ancestor_number, found.ancestor_hash),
                removed=[BlockRef(int(r["number"]), str(r["hash"])) for r in found.removed],
                added=[BlockRef(int(r["number"]), str(r["hash"])) for r in found.added],
            )
        else:
            # No record of the reorg: the client's block at `last_block` is gone, and we
            # cannot tell how deep its fork went; assume depth 1.
            parent = self.db.read(queries.block_by_number, last_block - 1)
            event = BlockReorged(
                depth=1,
                commonAncestor=BlockRef(last_block - 1, parent.hash if parent else row.parent_hash),
                removed=[BlockRef(last_block, last_hash)],
                added=[BlockRef(last_block, row.hash)],
            )
        self.emit(sid, "reorg", protocol.reorg(event))
        return event.commonAncestor.number
