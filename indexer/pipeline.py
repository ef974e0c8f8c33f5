"""Indexing a run of blocks: fetch, decode, store, announce.

The domain operation behind the `blocks` jobs; it knows nothing of Celery. A commit
refused because the block does not link to the stored chain (a reorg, or this job's
blocks being stale) runs `indexer.reorg.repair` and then reads the blocks again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from indexer.blocks import decode
from indexer.bus import BusUnavailable, EventBus
from indexer.events import BlockIndexed, BlockSource
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

    def index(
        self, first: int, last: int, source: BlockSource, force: bool = False
    ) -> list[BlockIndexed]:
        """Index heights first..last (inclusive) in one round trip and one transaction.

        Idempotent: heights already stored with the node's hash are left alone unless
        `force`. A block that does not link to the stored chain triggers a reorg repair,
        after which the blocks are read again; ReorgTooDeep (fatal) when the reorg is
        deeper than `max_reorg_depth` or indexing is halted. Announcements go through
        the outbox; if Redis is down they wait there and the block still counts as indexed.
        """
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
            self.relay()
        # Still refused: the node is mid-reorg; LinkMismatch is retryable.
        return self._fetch_and_save(numbers, source, force)

    def _fetch_and_save(
        self, numbers: list[int], source: BlockSource, force: bool
    ) -> list[BlockIndexed]:
        fetched = self.node.blocks_with_receipts(numbers)
        datas = [decode(block, receipts) for block, receipts in fetched]
        events = self.store.save_blocks(datas, source, force)
        self.relay()
        return events

    def relay(self) -> int:
        try:
            return self.bus.relay(self.store)
        except BusUnavailable as exc:
            log.warning("events stay in the outbox until Redis answers: %s", exc)
            return 0
