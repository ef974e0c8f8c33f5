"""Whether indexing keeps up: the highest indexed block against the node's head that the
follower last saw (`indexer.seen_head`), as `/readyz` and `/metrics` report it.

Indexing is stalled when the highest indexed block has not moved for `timeout` seconds
while the node's head has: a chain that makes no blocks, or a follower that stays
`CONFIRMATIONS` behind an idle head, is not a stall.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IndexingProgress:
    indexed: int | None
    head: int | None
    stalled_for: float | None  # seconds, once past the timeout; None while advancing

    @property
    def lag(self) -> int | None:
        """Blocks between the node's head and the highest indexed one."""
        if self.indexed is None or self.head is None:
            return None
        return max(self.head - self.indexed, 0)

    def describe(self) -> str:
        if self.stalled_for is None:
            return "ok"
        return (
            f"stalled: indexed up to {self.indexed} while the node is at {self.head}, "
            f"no progress for {self.stalled_for:.0f} s"
        )


class IndexingWatch:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout  # seconds
        self._indexed: int | None = None
        self._head_then: int | None = None  # the head when `_indexed` last changed
        self._since = 0.0

    def observe(self, indexed: int | None, head: int | None, now: float) -> IndexingProgress:
        """Take one reading (`now` in monotonic seconds)."""
        if indexed != self._indexed or self._head_then is None:
            self._indexed, self._head_then, self._since = indexed, head, now
        moved_on = head is not None and self._head_then is not None and head > self._head_then
        behind = head is not None and (indexed is None or head > indexed)
        waited = now - self._since
        stalled = moved_on and behind and waited >= self.timeout
        return IndexingProgress(indexed, head, waited if stalled else None)
