"""From stream events to pushes: each chain's blocks (`realtime.push.lane`), prices,
and the catch-up of reconnecting clients (resume).

The primary chain's lane pushes to `~live`, which every live client is in (a private
room, not a channel anyone can subscribe to): its `new-block`s and `reorg`s go to all
clients, as the reference gateway's do. Every other chain of the chains file has a lane
of its own, pushing to `blocks:<chainId>`, which clients subscribe to. Broadcasts are
encoded once per push and sent to this process's clients only, the
`ignore_queue=True` equivalent: every process reads the streams itself.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from indexer import queries
from indexer.events import BlockFinalized, BlockIndexed, BlockReorged, Event, PriceUpdated
from realtime import protocol
from realtime.config import RealtimeSettings
from realtime.metrics import Metrics
from realtime.push.lane import LIVE, Lane, blocks_room
from realtime.push.sequencer import BlockSequencer
from realtime.push.subscriptions import EventRouter, Subscription
from realtime.reads import Database
from realtime.transport.fanout import Encoded, Fanout, Payload, Signal

log = logging.getLogger(__name__)

__all__ = ["LIVE", "Feed"]

NO_PRICE_CAP = 10_000  # tokens remembered as having no price


def _when(event: PriceUpdated) -> tuple[int, int]:
    """Where a price sits in time (docs/prices.md): the block's timestamp and number for
    chain prices, the publish time for manual ones."""
    if event.blockNumber is None or event.blockTimestamp is None:
        return (event.publishedAt, -1)
    return (event.blockTimestamp * 1000, event.blockNumber)


def _always(chain_id: int) -> Callable[[], int]:
    return lambda: chain_id


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
        views = settings.chains()
        # the primary's id: the chains file's, or (one chain) learned from the database
        # or the first event that names it
        self.primary_id: int | None = views[0].chain_id
        self.chain_names = {v.chain_id: v.chain_name for v in views if v.chain_id is not None}
        self.single = settings.chains_file is None
        # contract event subscriptions: each contract by name, with its chain's lane
        self.router = EventRouter(
            {
                contract.name: (LIVE if i == 0 else blocks_room(view.chain_id or 0), contract)
                for i, view in enumerate(views)
                for contract in view.contracts
            }
        )
        self.primary = self._lane(settings, LIVE, self._primary_chain)
        self.lanes: dict[int, Lane] = {}
        for view in views[1:]:
            assert view.chain_id is not None
            chain_id = view.chain_id
            self.lanes[chain_id] = self._lane(settings, blocks_room(chain_id), _always(chain_id))
        self.prices: dict[str, PriceUpdated] = {}
        # Tokens the database had no price for when a subscriber asked: later subscribers
        # skip the read (a thread hop each) until a price event or a reorg says otherwise.
        self.no_price: set[str] = set()
        self.price_changes = 0  # counts price events and reorgs, to spot one during a read
        self._reads: dict[str, _Read] = {}  # snapshot reads under way, by token
        self._filling_prices = False

    def _lane(self, settings: RealtimeSettings, room: str, chain: Callable[[], int]) -> Lane:
        lane = Lane(
            self.fanout, settings, self.db, self.metrics, self.clock, room, chain, self.router
        )
        lane.on_reorg = self._forget_prices_after
        return lane

    def _primary_chain(self) -> int:
        if self.primary_id is None and self.db is not None:
            self.primary_id = self.db.primary() or None
        return self.primary_id or 0

    # the primary's lane, as clients of the reference gateway see it
    @property
    def sequencer(self) -> BlockSequencer:
        return self.primary.sequencer

    @property
    def waiting(self) -> dict[int, list[str]]:
        return self.primary.waiting

    def all_lanes(self) -> list[Lane]:
        return [self.primary, *self.lanes.values()]

    def lane_of(self, chain_id: int | None) -> Lane | None:
        """The lane of `chain_id` (None: an event of a producer from before chains,
        which indexed the primary only); None for a chain this server does not know."""
        if chain_id is None or self.single:
            if chain_id is not None and self.primary_id is None:
                self.primary_id = chain_id
            return self.primary
        if chain_id == self.primary_id:
            return self.primary
        return self.lanes.get(chain_id)

    def known_chain(self, chain_id: int) -> bool:
        """Whether `blocks:<chain_id>` names a chain this deployment indexes."""
        if self.single:
            return chain_id == self._primary_chain()
        return chain_id == self.primary_id or chain_id in self.lanes

    # stream side --------------------------------------------------------------------

    def start_at(self, number: int | None, chain_id: int | None = None) -> None:
        """Blocks up to `number` (the database head at start-up) count as pushed on the
        lane of `chain_id` (default: the primary)."""
        lane = self.lane_of(chain_id)
        if lane is not None:
            lane.start_at(number)

    def handle(self, event: Event) -> None:
        if isinstance(event, BlockFinalized):
            lane = self.lane_of(event.chainId)
            if lane is not None:
                lane.finalized(event)
        elif isinstance(event, BlockIndexed | BlockReorged):
            if event.chainId is None:
                event = self._on_primary(event)
            lane = self.lane_of(event.chainId)
            if lane is None:
                self.metrics.stream_entries.labels("unknown chain").inc()
                return
            if isinstance(event, BlockIndexed):
                lane.block(event)
            else:
                lane.reorg(event)
        elif isinstance(event, PriceUpdated):
            self.push_price(event)

    def _on_primary(self, event: BlockIndexed | BlockReorged) -> BlockIndexed | BlockReorged:
        """An event of a producer from before chains, which indexed the primary only."""
        try:
            primary = self._primary_chain()
        except Exception as exc:  # noqa: BLE001 - push it anyway, its chain unnamed
            log.warning("could not read the primary chain for an older event: %s", exc)
            primary = 0
        return dataclasses.replace(event, chainId=primary or None)

    def tick(self) -> None:
        for lane in self.all_lanes():
            lane.tick()

    def catch_up(self) -> None:
        """The stream came back after an outage, in which Redis may have lost entries
        this process had not read (a restart loses the stream): push what the database
        holds beyond what was pushed, blocks and prices, in green threads of their own."""
        for lane in self.all_lanes():
            lane.catch_up()
        if self.db is not None and not self._filling_prices:
            self._filling_prices = True
            self.fanout.spawn(self._fill_prices)

    def _fill_prices(self) -> None:
        assert self.db is not None
        try:
            for row in self.db.read(queries.latest_prices):
                self._catch_up_price(protocol.price_event_from_row(row))
        except Exception as exc:  # noqa: BLE001 - the stream goes on
            log.warning("reading missed prices from the database failed: %s", exc)
        finally:
            self._filling_prices = False

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
        PUSH_WINDOW blocks of its chain, or one older than the last price pushed for
        the token. The price a reorg brings back (`reorgId`) passes both: it is older
        by nature."""
        self.price_changes += 1
        self.no_price.discard(event.token)
        if event.reorgId is None:
            lane = self.lane_of(event.chainId)
            sequencer = lane.sequencer if lane is not None else None
            if (
                sequencer is not None
                and event.blockHash is not None
                and event.blockNumber is not None
                and sequencer.orphaned(event.blockNumber, event.blockHash)
            ):
                return  # a worker's late commit of a block a reorg removed
            highest = sequencer.highest if sequencer is not None else None
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

    def _forget_prices_after(self, event: BlockReorged) -> None:
        self.price_changes += 1
        self.no_price.clear()
        height = event.commonAncestor.number
        for token in [
            t
            for t, p in self.prices.items()
            if p.blockNumber is not None
            and p.blockNumber > height
            and self.lane_of(p.chainId) is self.lane_of(event.chainId)
        ]:
            del self.prices[token]  # the database has the price the reorg brought back

    # client side --------------------------------------------------------------------

    def broadcast(self, room: str, pkt: Encoded, event: str) -> int:
        sent = self.fanout.broadcast(room, pkt)
        if sent:
            self.metrics.push(event, sent)
        return sent

    def emit(self, sid: str, event: str, data: Payload) -> None:
        self.primary.emit(sid, event, data)

    def join_live(self, sid: str) -> None:
        self.primary.join(sid)

    def forget(self, sid: str) -> None:
        for lane in self.all_lanes():
            lane.forget(sid)
        self.router.forget(sid)

    def resume(self, sid: str, last_block: int, last_hash: str | None) -> None:
        """The handshake's resume (`auth.lastBlock`): the primary chain's."""
        self.primary.resume(sid, last_block, last_hash)

    def subscribe_blocks(
        self, sid: str, chain_id: int, last_block: int | None, last_hash: str | None
    ) -> None:
        """`subscribe {channel: "blocks:<chainId>"}`: the chain's blocks from now on,
        after what its room pushed since `last_block` (a `reorg` first if `last_hash`
        is no longer canonical). The primary's blocks reach every client already: its
        subscription only resumes, or changes nothing."""
        lane = self.lane_of(chain_id)
        assert lane is not None
        if last_block is None:
            lane.join(sid)
            return
        lane.leave(sid)  # back in once caught up: no block twice
        lane.resume(sid, last_block, last_hash)

    def unsubscribe_blocks(self, sid: str, chain_id: int) -> None:
        lane = self.lane_of(chain_id)
        if lane is not None and lane is not self.primary:
            lane.forget(sid)
            lane.leave(sid)

    def subscribe_events(
        self, sid: str, sub: Subscription, last_block: int | None, last_hash: str | None
    ) -> None:
        """Hold `sub` from now on, after what it missed since `last_block` (a `reorg`
        first if `last_hash` is no longer canonical on its chain)."""
        if last_block is None:
            self.router.add(sid, sub)
            self.fanout.join(sid, sub.room)
            return
        # held already (a resubscribe with lastBlock): out until caught up, no event twice
        self.router.remove(sid, sub.id)
        self.fanout.leave(sid, sub.room)
        self._lane_of_room(sub.lane).resume_events(sid, sub, last_block, last_hash)

    def unsubscribe_events(self, sid: str, sub: Subscription) -> bool:
        """`sid` no longer holds `sub` (nor catches it up); whether it did."""
        self._lane_of_room(sub.lane).cancel_resume(sid, sub.id)
        held = self.router.remove(sid, sub.id) is not None
        self.fanout.leave(sid, sub.room)
        return held

    def _lane_of_room(self, room: str) -> Lane:
        return next(lane for lane in self.all_lanes() if lane.room == room)
