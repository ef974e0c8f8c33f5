"""A chain's finality marks: its `safe` and `finalized` blocks, as the node says them
(contract: docs/chains.md, Finality).

The follower reads them every sweep with the `safe` and `finalized` block tags; on a
node without those tags, both are the block `FINALITY_DEPTH` below the head. It records
them in `chainpulse_meta` (`finality`) and announces each move with `block.finalized`
through the outbox. The finalized mark never goes back: a node that answers an older
`finalized` block (anvil after `evm_revert`; a node replaced by a lagging one) leaves
the recorded mark as it was, with a warning.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from indexer.errors import RpcError
from indexer.events import BlockFinalized, BlockRef

if TYPE_CHECKING:  # the read API parses the marks without loading the node client
    from indexer.rpc import Node

log = logging.getLogger(__name__)

KEY = "finality"  # chainpulse_meta, per chain: the marks as last announced


@dataclass(frozen=True)
class Marks:
    safe: BlockRef
    finalized: BlockRef

    def to_json(self) -> str:
        return json.dumps(
            {
                "safe": {"number": self.safe.number, "hash": self.safe.hash},
                "finalized": {"number": self.finalized.number, "hash": self.finalized.hash},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Marks:
        data = json.loads(text)
        return cls(BlockRef(**data["safe"]), BlockRef(**data["finalized"]))

    def event(self, chain_id: int) -> BlockFinalized:
        return BlockFinalized(self.finalized.number, self.finalized.hash, self.safe, chain_id)


def read_marks(node: Node, head: int, depth: int) -> Marks | None:
    """The node's safe and finalized blocks (None while it has none); on a node without
    those tags, both the block `depth` below `head` (None while the chain is shorter)."""
    try:
        safe = node.block_header("safe")
        final = node.block_header("finalized")
    except RpcError:  # a node that knows no such tags
        deep = node.block_header(head - depth) if head >= depth else None
        return Marks(_ref(deep), _ref(deep)) if deep is not None else None
    if safe is None or final is None:  # the tags, but nothing final yet
        return None
    return Marks(_ref(safe), _ref(final))


def moved(recorded: Marks | None, marks: Marks) -> Marks | None:
    """What to record and announce of `marks`, given those `recorded`: None when
    nothing moved. A finalized mark older than the one recorded is refused (warned),
    and the safe mark never goes below the finalized one."""
    if recorded is not None and marks.finalized.number < recorded.finalized.number:
        log.warning(
            "the node's finalized block %d is below the recorded %d: keeping %d",
            marks.finalized.number,
            recorded.finalized.number,
            recorded.finalized.number,
        )
        finalized = recorded.finalized
        safe = marks.safe if marks.safe.number >= finalized.number else finalized
        marks = Marks(safe, finalized)
    return None if marks == recorded else marks


def _ref(header: dict[str, object]) -> BlockRef:
    return BlockRef(int(str(header["number"]), 16), str(header["hash"]).lower())
