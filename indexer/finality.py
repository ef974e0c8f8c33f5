"""A chain's finality marks: its `safe` and `finalized` blocks, as the node says them
(contract: docs/chains.md, Finality).

The follower reads them every sweep with the `safe` and `finalized` block tags; on a
node that does not know those tags, both are the block `FINALITY_DEPTH` below the head.
It records them in `chainpulse_meta` (`finality`) and announces each move with
`block.finalized` through the outbox. Neither mark goes back: a node that answers an
older block (anvil after `evm_revert`; a replica that lags another) leaves the recorded
mark as it was. `chainpulse follow --clear-halt` forgets them (a chain restarted from
genesis, an endpoint that served another chain).
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
        return json.dumps({"safe": self.safe.to_json(), "finalized": self.finalized.to_json()})

    @classmethod
    def from_json(cls, text: str) -> Marks:
        data = json.loads(text)
        return cls(BlockRef(**data["safe"]), BlockRef(**data["finalized"]))

    def event(self, chain_id: int) -> BlockFinalized:
        return BlockFinalized(self.finalized.number, self.finalized.hash, self.safe, chain_id)


# JSON-RPC codes of a node that does not know a block tag (invalid params, and the
# "method not found" some proxies answer): the chain has no finality notion
NO_TAGS = (-32602, -32601)


def read_marks(node: Node, head: int, depth: int) -> Marks | None:
    """The node's safe and finalized blocks; None while it has none (a post-merge node
    before the first finalization answers null) or when it refused to say this time
    (any other JSON-RPC error: the next sweep asks again). On a node that does not know
    the tags (`NO_TAGS`), both the block `depth` below `head` (None while the chain is
    shorter)."""
    try:
        safe = node.block_header("safe")
        final = node.block_header("finalized")
    except RpcError as exc:
        if exc.code not in NO_TAGS:
            log.warning("the node did not give its finality marks this sweep: %s", exc)
            return None
        deep = node.block_header(head - depth) if head >= depth else None
        return Marks(_ref(deep), _ref(deep)) if deep is not None else None
    if safe is None or final is None:
        return None
    return Marks(_ref(safe), _ref(final))


def moved(recorded: Marks | None, marks: Marks) -> Marks | None:
    """What to record and announce of `marks`, given those `recorded`: None when
    nothing moved forward. Neither mark goes back: a node that answers an older block
    (anvil after `evm_revert`, a replica that lags another) leaves the recorded mark,
    with a warning for the finalized one."""
    if recorded is None:  # the two tags may come from two replicas: safe never below
        return Marks(max(marks.safe, marks.finalized, key=_number), marks.finalized)
    if marks.finalized.number < recorded.finalized.number:
        log.warning(
            "the node's finalized block %d is below the recorded %d: keeping %d",
            marks.finalized.number,
            recorded.finalized.number,
            recorded.finalized.number,
        )
    finalized = max(recorded.finalized, marks.finalized, key=_number)
    safe = max(recorded.safe, marks.safe, finalized, key=_number)
    new = Marks(safe, finalized)
    return None if new == recorded else new


def _number(ref: BlockRef) -> int:
    return ref.number


def _ref(header: dict[str, object]) -> BlockRef:
    return BlockRef(int(str(header["number"]), 16), str(header["hash"]).lower())
