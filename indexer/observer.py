"""What the indexing code reports as it works, for a process's metrics to count.

The domain code knows no metrics library: it calls an `Observer`, which each process
implements over prometheus_client (`workers.metrics`, `follower.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from indexer.events import BlockIndexed, BlockReorged


class Observer(Protocol):
    def indexed(self, events: Sequence[BlockIndexed]) -> None:
        """Blocks were written (one event per block, with its transaction count)."""

    def reorged(self, event: BlockReorged) -> None:
        """A reorg was repaired (`event.depth` blocks removed)."""


class Unobserved:
    """The observer of code that counts nothing (commands, tests)."""

    def indexed(self, events: Sequence[BlockIndexed]) -> None:
        pass

    def reorged(self, event: BlockReorged) -> None:
        pass
