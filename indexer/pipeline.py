"""Indexing a run of blocks: fetch, decode, store, announce.

The domain operation behind the `blocks` jobs; it knows nothing of Celery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from indexer.blocks import decode
from indexer.bus import BusUnavailable, EventBus
from indexer.events import BlockIndexed, BlockSource
from indexer.rpc import Node
from indexer.store import Store

log = logging.getLogger(__name__)


@dataclass
class Indexer:
    node: Node
    store: Store
    bus: EventBus

    def index(
        self, first: int, last: int, source: BlockSource, force: bool = False
    ) -> list[BlockIndexed]:
        """Index heights first..last (inclusive) in one round trip and one transaction.

        Idempotent: heights already stored with the node's hash are left alone unless
        `force`. Announcements go through the outbox; if Redis is down they wait there
        and the block still counts as indexed.
        """
        fetched = self.node.blocks_with_receipts(list(range(first, last + 1)))
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
