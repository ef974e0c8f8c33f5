"""Order `block.indexed` events into the `new-block` sequence clients see.

Invariants (contract: docs/protocol.md, ordering):
- between reorgs, pushed heights rise by exactly 1;
- after a reorg, the next pushed block is `commonAncestor.number + 1`;
- a block more than `window` behind the highest height seen is not pushed (backfill).

Parallel workers publish out of order, so a block that arrives ahead of its
predecessor waits in a buffer. A gap whose blocks the database holds (their stream
entries were lost: Redis restarted before this server read them) is filled from there
(`gap`, `fill`), provided the stored blocks link by hash the last pushed block to the
lowest waiting one. A gap that does not fill within `gap_timeout` seconds (a block
that failed for good), or that leaves more than `window` blocks waiting, is given up:
the sequence continues at the lowest waiting block. That jump is the only exception
to "+1", and it is counted in `skipped`; a client sees it as a `parentHash` that does
not match and can load the missing heights from `/api/blocks/<number>`.
A missing block that arrives after it was given up is dropped, as any stale block is,
and so is a late `block.indexed` for a block that a reorg already removed.

The first block seen sets the start when no `start` height is given (a fresh server
pushes from where the stream is, and clients catch up from the database).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from indexer.events import BlockIndexed, BlockReorged

Action: TypeAlias = BlockIndexed | BlockReorged


@dataclass
class BlockSequencer:
    window: int  # blocks behind the highest seen that are still pushed
    gap_timeout: float  # seconds a gap may hold back later blocks
    last: int | None = None  # height of the last block pushed
    highest: int | None = None  # highest height seen
    skipped: int = 0  # heights given up on
    filled: int = 0  # heights taken from the database (`fill`)
    _pending: dict[int, BlockIndexed] = field(default_factory=dict)
    _pushed: dict[int, str] = field(default_factory=dict)  # height -> hash, last `window`
    _early: dict[int, BlockIndexed] = field(default_factory=dict)  # same height, other hash
    _gap_since: float | None = None
    _removed: dict[str, None] = field(default_factory=dict)  # hashes reorged out, bounded

    def block(self, event: BlockIndexed, now: float) -> list[Action]:
        """Take one `block.indexed`; returns the blocks now ready to push, in order."""
        n = event.blockNumber
        if event.blockHash in self._removed:
            return []  # a late event for a block a reorg already removed
        if self.highest is None or n > self.highest:
            self.highest = n
        if n < self.highest - self.window:
            return []
        if self.last is not None and n <= self.last:
            if self._pushed.get(n) not in (None, event.blockHash):
                self._early[n] = event  # a replacement, pushed if its reorg arrives
            return []
        self._pending[n] = event
        if self.last is None:
            self.last = n - 1
        floor = self.highest - self.window
        if self.last < floor - 1:
            self.skipped += floor - 1 - self.last
            self.last = floor - 1
            self._pending = {h: b for h, b in self._pending.items() if h >= floor}
        return self._drain(now)

    def reorg(self, event: BlockReorged, now: float) -> list[Action]:
        """Take one `block.reorged`: the reorg itself, then any blocks now ready."""
        ancestor = event.commonAncestor.number
        removed = {ref.hash for ref in event.removed}
        for block_hash in removed:
            self._removed[block_hash] = None
        while len(self._removed) > 4 * self.window:
            del self._removed[next(iter(self._removed))]
        added = {ref.number: ref.hash for ref in event.added}
        self.last = ancestor
        self._pushed = {h: x for h, x in self._pushed.items() if h <= ancestor}
        candidates = {**self._early, **self._pending}
        self._early = {}
        self._pending = {
            h: b
            for h, b in candidates.items()
            if h > ancestor
            and b.blockHash not in removed
            and added.get(h, b.blockHash) == b.blockHash
        }
        self._gap_since = now if self._pending else None
        return [event, *self._drain(now)]

    def tick(self, now: float) -> list[Action]:
        """Give up a gap older than `gap_timeout`; returns the blocks then ready."""
        if not self._pending or self._gap_since is None:
            return []
        if now - self._gap_since < self.gap_timeout:
            return []
        lowest = min(self._pending)
        assert self.last is not None
        self.skipped += lowest - 1 - self.last
        self.last = lowest - 1
        return self._drain(now)

    def orphaned(self, number: int, block_hash: str) -> bool:
        """Whether block `number` with `block_hash` is known not to be canonical: a reorg
        removed it, or another block was pushed at its height."""
        pushed = self._pushed.get(number)
        return block_hash in self._removed or (pushed is not None and pushed != block_hash)

    def gap(self, now: float, age: float) -> tuple[int, int] | None:
        """The heights missing below the lowest waiting block (first, last), once the
        gap is `age` seconds old; None when nothing waits for them."""
        if not self._pending or self._gap_since is None or self.last is None:
            return None
        if now - self._gap_since < age:
            return None
        return self.last + 1, min(self._pending) - 1

    def fill(self, blocks: list[BlockIndexed], now: float) -> list[Action]:
        """Take stored blocks for the heights after the last pushed one (a gap, or what
        came after it), and return the blocks then ready. They are taken only as far as
        they follow on by height and hash, and only if they link to the waiting block
        above them: a reorg under way breaks the link, and then the stream decides."""
        if self.last is None:
            return []
        chain: list[BlockIndexed] = []
        n, parent = self.last, self._pushed.get(self.last)
        for block in sorted(blocks, key=lambda b: b.blockNumber):
            if block.blockNumber <= n:
                continue
            waiting = self._pending.get(block.blockNumber)
            if (
                block.blockNumber != n + 1
                or block.blockHash in self._removed
                or (parent is not None and block.parentHash != parent)
                or (waiting is not None and waiting.blockHash != block.blockHash)
            ):
                break
            chain.append(block)
            n, parent = block.blockNumber, block.blockHash
        above = self._pending.get(n + 1)
        if not chain or (above is not None and above.parentHash != parent):
            return []
        for block in chain:
            self._pending[block.blockNumber] = block
        self.filled += len(chain)
        if self.highest is None or n > self.highest:
            self.highest = n
        return self._drain(now)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def _drain(self, now: float) -> list[Action]:
        assert self.last is not None
        ready: list[Action] = []
        while self.last + 1 in self._pending:
            block = self._pending.pop(self.last + 1)
            self.last += 1
            self._pushed[self.last] = block.blockHash
            ready.append(block)
        if ready:
            for h in [h for h in self._pushed if h <= self.last - self.window]:
                del self._pushed[h]
            for h in [h for h in self._early if h <= self.last - self.window]:
                del self._early[h]
        if len(self._pending) > self.window:
            lowest = min(self._pending)
            self.skipped += lowest - 1 - self.last
            self.last = lowest - 1
            return ready + self._drain(now)
        if not self._pending:
            self._gap_since = None
        elif ready or self._gap_since is None:
            self._gap_since = now
        return ready
