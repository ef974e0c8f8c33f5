"""One chain's blocks, from stream events to pushes: its `new-block` sequence, its
reorgs, and the catch-up of a client that resumes it.

A lane pushes to its room: the primary chain's to `~live`, which every live client is
in (the reference gateway's `new-block` to all), another chain's to `blocks:<chainId>`,
which clients subscribe to. A resuming client joins the room only once it has caught
up, so it sees each height once and none is missing. Pushes run on the stream
reader's green thread and never yield while fanning out; a catch-up joins the room in
a step that does not yield either, after it has replayed what was pushed while it read
the database (kept in `ring`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from indexer import queries
from indexer.events import BlockFinalized, BlockIndexed, BlockRef, BlockReorged
from realtime import protocol
from realtime.config import RealtimeSettings
from realtime.metrics import Metrics
from realtime.push.sequencer import BlockSequencer
from realtime.push.subscriptions import EventRouter, Subscription
from realtime.reads import Database
from realtime.transport.fanout import Encoded, Fanout, Payload

log = logging.getLogger(__name__)

LIVE = "~live"  # the primary chain's room: every live client


def blocks_room(chain_id: int) -> str:
    return f"blocks:{chain_id}"


class Lane:
    def __init__(
        self,
        fanout: Fanout,
        settings: RealtimeSettings,
        db: Database | None,
        metrics: Metrics,
        clock: Callable[[], float],
        room: str,
        chain: Callable[[], int],
        router: EventRouter | None = None,
    ) -> None:
        """`chain()`: the lane's chain id, for database reads (the primary's may be
        learned late: a database bound after the server started). `router`: the
        contract event subscriptions, to which a block's decoded events go."""
        self.fanout = fanout
        self.db = db
        self.metrics = metrics
        self.clock = clock
        self.room = room
        self.chain = chain
        self.push_window = settings.push_window
        self.resume_window = settings.resume_window
        self.sequencer = BlockSequencer(
            window=settings.push_window, gap_timeout=settings.block_gap_timeout
        )
        self.ring: deque[tuple[int, str, Encoded]] = deque(
            maxlen=max(256, 4 * settings.push_window)
        )
        self.ring_seq = 0  # sequence number of the last pushed message
        self.waiting: dict[int, list[str]] = {}  # lastBlock ahead of us -> sids
        self.resuming: dict[str, object] = {}  # sid -> its catch-up under way
        self.router = router
        self.members: set[str] = set()  # in the room (tracked for another chain's lane)
        self.reorg_count = 0  # reorgs pushed, and the last one
        self.last_reorg: BlockReorged | None = None
        self._filling = False  # a read of missing blocks is under way
        self.on_reorg: Callable[[BlockReorged], None] = lambda event: None

    # stream side --------------------------------------------------------------------

    def start_at(self, number: int | None) -> None:
        """Blocks up to `number` (the database head at start-up) count as pushed."""
        if number is not None:
            self.sequencer.last = number
            self.sequencer.highest = number

    def block(self, event: BlockIndexed) -> None:
        self._push(self.sequencer.block(event, self.clock()))

    def reorg(self, event: BlockReorged) -> None:
        self._push(self.sequencer.reorg(event, self.clock()))

    def finalized(self, event: BlockFinalized) -> None:
        """The chain's finality marks moved: `finalized` to the room (and, as a reorg
        does, to this chain's event subscribers outside it)."""
        self._announce("finalized", protocol.finalized(event))

    def tick(self) -> None:
        now = self.clock()
        skipped = self.sequencer.skipped
        self._push(self.sequencer.tick(now))
        if self.sequencer.skipped != skipped:
            self.metrics.blocks_skipped.inc(self.sequencer.skipped - skipped)
            log.warning(
                "gave up on %d missing height(s) (%s)", self.sequencer.skipped - skipped, self.room
            )
        gap = self.sequencer.gap(now, min(FILL_AFTER, self.sequencer.gap_timeout / 2))
        if gap is not None:
            self.start_fill(gap[0] - 1, gap[1])

    def catch_up(self) -> None:
        """The stream came back after an outage: fill from the database what it holds
        beyond what was pushed."""
        last = self.sequencer.last
        if last is not None:
            self.start_fill(last, last + self.push_window)

    def start_fill(self, after: int, up_to: int) -> None:
        """`_fill` in a green thread of its own, unless one runs already."""
        if self.db is not None and not self._filling:
            self._filling = True
            self.fanout.spawn(lambda: self._fill(after, up_to))

    def _fill(self, after: int, up_to: int) -> None:
        """Blocks `after < n <= up_to` from the database into the sequence (see
        `BlockSequencer.fill`)."""
        assert self.db is not None
        try:
            chain = self.chain()
            rows = self.db.read(queries.blocks_between, chain, after, up_to)
            carried: dict[int, list[dict[str, Any]]] = {}
            if self.router is not None and len(self.router):  # their events, to route
                for event in self.db.read(queries.contract_events_between, chain, after, up_to):
                    carried.setdefault(event["blockNumber"], []).append(event)
            blocks = [
                replace(protocol.indexed_from_row(r), contractEvents=carried.get(r.number))
                for r in rows
            ]
            before = self.sequencer.filled
            self._push(self.sequencer.fill(blocks, self.clock()))
            if self.sequencer.filled != before:
                filled = self.sequencer.filled - before
                self.metrics.blocks_filled.inc(filled)
                log.warning(
                    "pushed %d block(s) from the database (%s): the stream lost them",
                    filled,
                    self.room,
                )
        except Exception as exc:  # noqa: BLE001 - the stream, or the gap timeout, goes on
            log.warning("reading missed blocks from the database failed: %s", exc)
        finally:
            self._filling = False

    def _push(self, actions: list[BlockIndexed | BlockReorged]) -> None:
        for action in actions:
            if isinstance(action, BlockIndexed):
                pkt = self.fanout.encode("new-block", protocol.new_block(action))
                self._remember("new-block", pkt)
                self.broadcast(pkt, "new-block")
                self._release_waiting(action.blockNumber)
                if action.contractEvents and self.router is not None:
                    self._publish_events(action.contractEvents)
            else:
                self.reorg_count += 1
                self.last_reorg = action
                pkt = self._announce("reorg", protocol.reorg(action))
                self.on_reorg(action)
                for height in [h for h in self.waiting if h > action.commonAncestor.number]:
                    for sid in self.waiting.pop(height):
                        self.send(sid, pkt, "reorg")
                        self.join(sid)

    def _publish_events(self, events: list[dict[str, Any]]) -> None:
        """A pushed block's decoded events, in chain order, each to the subscriptions it
        answers (one encoding per subscription, shared by its holders)."""
        assert self.router is not None
        chain = self.chain()
        for event in sorted(events, key=lambda e: (e["blockNumber"], e["logIndex"])):
            if self.sequencer.orphaned(event["blockNumber"], event["blockHash"]):
                continue
            for sub in self.router.route(event):
                pkt = self.fanout.encode(
                    "contract-event", protocol.contract_event(chain, event, sub.id)
                )
                sent = self.fanout.broadcast(sub.room, pkt)
                if sent:
                    self.metrics.push("contract-event", sent)

    def _announce(self, event: str, data: Payload) -> Encoded:
        """A chain-wide message (`reorg`, `finalized`): to the room, remembered for
        catch-ups, and to this chain's event subscribers outside its blocks room."""
        pkt = self.fanout.encode(event, data)
        self._remember(event, pkt)
        self.broadcast(pkt, event)
        if self.router is not None and self.room != LIVE:
            for sid in self.router.holders(self.room) - self.members:
                self.send(sid, pkt, event)
        return pkt

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
                    self.join(sid)

    # client side --------------------------------------------------------------------

    def broadcast(self, pkt: Encoded, event: str) -> int:
        sent = self.fanout.broadcast(self.room, pkt)
        if sent:
            self.metrics.push(event, sent)
        return sent

    def send(self, sid: str, pkt: Encoded, event: str) -> None:
        if self.fanout.send(sid, pkt):
            self.metrics.push(event)

    def emit(self, sid: str, event: str, data: Payload) -> None:
        self.send(sid, self.fanout.encode(event, data), event)

    def join(self, sid: str) -> None:
        if self.fanout.connected(sid):
            self.fanout.join(sid, self.room)
            if self.room != LIVE:
                self.members.add(sid)

    def leave(self, sid: str) -> None:
        self.fanout.leave(sid, self.room)
        self.members.discard(sid)

    def forget(self, sid: str) -> None:
        """`sid` left the lane (unsubscribed or gone): a catch-up under way for it
        stops and never joins it to the room."""
        self.resuming.pop(sid, None)
        self.members.discard(sid)
        for height in [h for h, sids in self.waiting.items() if sid in sids]:
            self.waiting[height].remove(sid)
            if not self.waiting[height]:
                del self.waiting[height]

    def resume(self, sid: str, last_block: int, last_hash: str | None) -> None:
        """Catch `sid` up from `last_block`, then put it in the room; runs in its own
        green thread. Order: (a `reorg` if `last_hash` is no longer canonical), the
        missed `new-block`s from the database, what was pushed meanwhile, then live."""
        token = self.resuming[sid] = object()  # a later resume of `sid` supersedes it

        def current() -> bool:
            return self.fanout.connected(sid) and self.resuming.get(sid) is token

        try:
            self._resume(sid, last_block, last_hash, current)
        except Exception:
            log.exception("resume failed", extra={"client": sid})
            if current():
                self.emit(sid, "exception", protocol.exception(protocol.RESUME_FAILED))
                self.join(sid)
        finally:
            if self.resuming.get(sid) is token:
                del self.resuming[sid]

    def _resume(
        self, sid: str, last_block: int, last_hash: str | None, current: Callable[[], bool]
    ) -> None:
        """`current()`: whether this catch-up still stands (`sid` connected, not
        unsubscribed, not resumed again since); checked after every read, which yields."""
        start = self._reorg_first(sid, last_block, last_hash, current)
        for _attempt in range(8):
            if not current():
                return
            frontier, seq = self.sequencer.last, self.ring_seq
            if frontier is None or start == frontier:
                self.join(sid)
                return
            if start > frontier:
                if start - frontier > self.push_window:
                    self.join(sid)  # a height we have no reason to wait for
                else:
                    self.waiting.setdefault(start, []).append(sid)
                return
            if frontier - start > self.resume_window:
                self.emit(sid, "exception", protocol.exception(protocol.RESUME_WINDOW_EXCEEDED))
                self.join(sid)
                return
            rows = (
                self.db.read(queries.blocks_between, self.chain(), start, frontier)
                if self.db
                else []
            )
            if not current():
                return
            for row in rows:
                self.emit(sid, "new-block", protocol.new_block(protocol.indexed_from_row(row)))
            start = frontier
            missed = self._since(seq)
            if missed is None:
                continue  # more was pushed than the ring holds: read again from `start`
            for _seq, event, pkt in missed:
                self.send(sid, pkt, event)
            self.join(sid)
            return
        if current():
            self.join(sid)

    def resume_events(
        self, sid: str, sub: Subscription, last_block: int, last_hash: str | None
    ) -> None:
        """Send `sid` what `sub` missed since `last_block` (a `reorg` first if
        `last_hash` is no longer canonical), then hold `sub` live; runs in its own green
        thread. The database is read up to the last pushed block, again from there if
        more were pushed meanwhile (and from a reorg's ancestor if one was: what the read
        found of the blocks it removed is dropped, and a `reorg` retracts what was sent
        of them), each event sent once; `sub` goes live in the step that finds nothing
        new was pushed. A client ahead of this server waits for it, so that nothing at
        or below its `lastBlock` comes again."""
        assert self.router is not None
        key = f"{sid} {sub.id}"
        token = self.resuming[key] = object()

        def current() -> bool:
            return self.fanout.connected(sid) and self.resuming.get(key) is token

        def go_live() -> None:
            assert self.router is not None
            self.router.add(sid, sub)
            self.fanout.join(sid, sub.room)

        sent: set[tuple[int, int, str]] = set()  # (block, log index, block hash)
        try:
            start = self._reorg_first(sid, last_block, last_hash, current)
            waited = 0.0
            while (self.sequencer.last or 0) < start and waited < AHEAD_WAIT:
                if not current() or start - (self.sequencer.last or 0) > self.push_window:
                    break  # not a height this server will reach soon
                self.fanout.sleep(0.2)
                waited += 0.2
            for _attempt in range(RESUME_PASSES):
                frontier, reorgs = self.sequencer.last, self.reorg_count
                if not current():
                    return
                if frontier is None or frontier <= start:
                    break
                if frontier - start > self.resume_window:
                    self.emit(sid, "exception", protocol.exception(
                        protocol.RESUME_WINDOW_EXCEEDED, sub.channel
                    ))  # fmt: skip
                    break
                events = self.db.read(
                    queries.contract_events_between, self.chain(), start, frontier,
                    sub.contract, sub.event, sub.columns,
                ) if self.db else []  # fmt: skip
                if not current():
                    return
                if self.reorg_count != reorgs and self.last_reorg is not None:
                    reorg = self.last_reorg  # pushed during the read
                    removed = {ref.hash for ref in reorg.removed}
                    if self.room != LIVE and any(h in removed for _, _, h in sent):
                        self.emit(sid, "reorg", protocol.reorg(reorg))  # retract what was sent
                    sent = {e for e in sent if e[2] not in removed}
                    frontier = min(frontier, reorg.commonAncestor.number)
                for event in events:
                    mark = (event["blockNumber"], event["logIndex"], event["blockHash"])
                    if (
                        mark in sent
                        or self.sequencer.orphaned(event["blockNumber"], event["blockHash"])
                        or not sub.matches(self.router.indexed_values(event))
                    ):
                        continue
                    sent.add(mark)
                    self.emit(sid, "contract-event",
                              protocol.contract_event(self.chain(), event, sub.id))  # fmt: skip
                start = frontier
                if self.sequencer.last == frontier and self.reorg_count == reorgs:
                    go_live()  # nothing pushed since the read: no step between
                    return
            else:
                # the chain kept moving past every read: say so rather than leave a gap
                if current():
                    self.emit(sid, "exception", protocol.exception(
                        protocol.RESUME_FAILED, sub.channel
                    ))  # fmt: skip
            if current():
                go_live()
        except Exception:
            log.exception("resume failed", extra={"client": sid})
            if current():
                self.emit(sid, "exception", protocol.exception(protocol.RESUME_FAILED, sub.channel))
                go_live()
        finally:
            if self.resuming.get(key) is token:
                del self.resuming[key]

    def cancel_resume(self, sid: str, sub_id: str) -> None:
        self.resuming.pop(f"{sid} {sub_id}", None)

    def _reorg_first(
        self, sid: str, last_block: int, last_hash: str | None, current: Callable[[], bool]
    ) -> int:
        """Where a catch-up from `last_block` starts: there, or (its `reorg` sent first)
        at the common ancestor when `last_hash` is no longer canonical."""
        if last_hash is None or self.db is None:
            return last_block
        reorg = self._reorg_since(last_block, last_hash)
        if reorg is None or not current():
            return last_block
        self.emit(sid, "reorg", protocol.reorg(reorg))
        return reorg.commonAncestor.number

    def _reorg_since(self, last_block: int, last_hash: str) -> BlockReorged | None:
        """The reorg that took `last_hash` out of the chain at `last_block`, or None
        while it is canonical (or beyond what the database holds)."""
        assert self.db is not None
        chain = self.chain()
        row = self.db.read(queries.block_by_number, chain, last_block)
        if row is None or row.hash == last_hash.lower():
            return None
        found = self.db.read(queries.reorg_removing, chain, last_block, last_hash)
        if found is not None:
            event = BlockReorged(
                depth=found.depth,
                commonAncestor=BlockRef(found.ancestor_number, found.ancestor_hash),
                removed=[BlockRef(int(r["number"]), str(r["hash"])) for r in found.removed],
                added=[BlockRef(int(r["number"]), str(r["hash"])) for r in found.added],
                chainId=chain,
            )
        else:
            # No record of the reorg: the client's block at `last_block` is gone, and we
            # cannot tell how deep its fork went; assume depth 1.
            parent = self.db.read(queries.block_by_number, chain, last_block - 1)
            event = BlockReorged(
                depth=1,
                commonAncestor=BlockRef(last_block - 1, parent.hash if parent else row.parent_hash),
                removed=[BlockRef(last_block, last_hash)],
                added=[BlockRef(last_block, row.hash)],
                chainId=chain,
            )
        return event


RESUME_PASSES = 50  # database reads a catch-up makes while the chain moves on
AHEAD_WAIT = 10.0  # seconds a client ahead of this server waits for it to catch up

# seconds a gap in the heights waits for the stream before the database is asked (the
# stream usually fills it within milliseconds: workers commit out of order)
FILL_AFTER = 1.0
