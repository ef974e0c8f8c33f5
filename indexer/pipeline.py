"""Indexing a run of blocks: fetch, decode, store, announce.

The domain operation behind the `blocks` jobs; it knows nothing of Celery. A commit
refused because the block does not link to the stored chain (a reorg, or this job's
blocks being stale) runs `indexer.reorg.repair` and then reads the blocks again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from indexer import outbox
from indexer.blocks import fetch
from indexer.bus import BusUnavailable, EventBus
from indexer.events import BlockIndexed, BlockSource
from indexer.observer import Observer, Unobserved
from indexer.reorg import repair
from indexer.rpc import Node
from indexer.store import LinkMismatch, Store

log = logging.getLogger(__name__)


@dataclass
class Indexer:
    node: Node
    store: Store
    bus: EventBus
    max_reorg_depth: int = 64
    observer: Observer = field(default_factory=Unobserved)
    _backlog: bool = field(default=False, init=False)  # events left in the outbox

    def index(
        self, first: int, last: int, source: BlockSource, force: bool = False
    ) -> list[BlockIndexed]:
        """Index heights first..last (inclusive) in one round trip and one transaction.

        Idempotent: heights already stored with the node's hash are left alone unless
        `force`. A block that does not link to the stored chain triggers a reorg repair,
        after which the blocks are read again; ReorgTooDeep (fatal) when the reorg is
        deeper than `max_reorg_depth` or indexing is halted. Announcements go through
        the outbox and are appended right after the commit; if Redis is down they wait
        there, the block still counts as indexed, and this process relays them (oldest
        first) before announcing anything newer.
        """
        if self.store.chain_id is None:  # the node's chain, checked against the database's
            self.store.bind_chain(self.node.chain_id())
        numbers = list(range(first, last + 1))
        try:
            return self._fetch_and_save(numbers, source, force)
        except LinkMismatch as exc:
            log.info("%s; checking the stored chain against the node", exc)
            near = exc.number
        reorg = repair(self.store, self.node, self.max_reorg_depth, near=[near], source=source)
        if reorg is None:
            log.info("no stored block was orphaned; re-reading blocks %d-%d", first, last)
        else:
            self.observer.reorged(reorg)
            self.relay()
        # Still refused: the node is mid-reorg; LinkMismatch is retryable.
        return self._fetch_and_save(numbers, source, force)

    def _fetch_and_save(
        self, numbers: list[int], source: BlockSource, force: bool
    ) -> list[BlockIndexed]:
        self.store.prepare_prices(self.node)
        saved = self.store.save_blocks(fetch(self.node, numbers), source, force)
        self.observer.indexed(saved.events)
        if self._backlog:
            self.relay()
        else:
            try:
                outbox.deliver(self.store, self.bus, saved.outbox)
            except BusUnavailable as exc:
                self._left_behind(exc)
        return saved.events

    def relay(self) -> int:
        """Deliver every pending outbox row, oldest first; returns how many."""
        try:
            delivered = outbox.relay(self.store, self.bus)
        except BusUnavailable as exc:
            self._left_behind(exc)
            return 0
        self._backlog = False
        return delivered

    def _left_behind(self, exc: BusUnavailable) -> None:
        # Until a relay empties the outbox, new events queue behind the old ones.
        self._backlog = True
        log.warning("events stay in the outbox until Redis answers: %s", exc)
