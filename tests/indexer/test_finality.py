"""A chain's finality marks (`indexer.finality`): read from a real anvil's `safe` and
`finalized` tags, from `FINALITY_DEPTH` below the head on a node that does not know
those tags, none from a node that knows them but cannot answer (anvil behind a proxy
that answers the tags as such nodes do), and the rule that no mark goes back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from chainpulse.devnet import Anvil
from indexer.events import BlockFinalized, BlockRef, from_fields, to_fields
from indexer.finality import Marks, moved, read_marks
from indexer.rpc import Node
from tests.harness.proxy import RpcProxy


def ref(anvil: Anvil, number: int) -> BlockRef:
    return BlockRef(number, anvil.block(number)["hash"].lower())


def test_the_marks_are_the_nodes_safe_and_finalized_blocks(anvil: Anvil) -> None:
    anvil.mine(80)  # anvil: safe = head - 32, finalized = head - 64 (32 slots an epoch)
    marks = read_marks(Node([anvil.url]), anvil.head(), depth=10)
    assert marks == Marks(safe=ref(anvil, 48), finalized=ref(anvil, 16))


def answering_tags(error: dict[str, Any] | None) -> Any:
    """A proxy's rewrite: the tags answered with `error` (None: with a null block)."""

    def rewrite(request: Any, reply: Any) -> Any:
        if isinstance(request, list):  # a batch
            return [rewrite(one, answer) for one, answer in zip(request, reply, strict=True)]
        params = request.get("params") or [None]
        if request.get("method") != "eth_getBlockByNumber" or params[0] not in (
            "safe",
            "finalized",
        ):
            return reply
        if error is None:
            return {"jsonrpc": "2.0", "id": request["id"], "result": None}
        return {"jsonrpc": "2.0", "id": request["id"], "error": error}

    return rewrite


@pytest.fixture
def proxy(anvil: Anvil) -> Iterator[RpcProxy]:
    with RpcProxy(anvil.url) as proxy:
        yield proxy


def test_without_the_tags_both_marks_are_the_block_finality_depth_below_the_head(
    anvil: Anvil, proxy: RpcProxy
) -> None:
    # a chain without finality: the tags are an invalid argument
    proxy.rewrite = answering_tags({"code": -32602, "message": "invalid block tag"})
    node = Node([proxy.url])
    anvil.mine(5)
    assert read_marks(node, anvil.head(), depth=10) is None  # shorter than the depth
    anvil.mine(20)
    assert read_marks(node, 25, depth=10) == Marks(ref(anvil, 15), ref(anvil, 15))


def test_a_node_with_the_tags_that_has_no_answer_gives_no_marks(
    anvil: Anvil, proxy: RpcProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Never the depth below the head for a node that knows the tags: a post-merge node
    before its first finalization (null), or one that fails to say this time."""
    anvil.mine(80)
    node = Node([proxy.url])
    proxy.rewrite = answering_tags(None)
    assert read_marks(node, 80, depth=10) is None
    proxy.rewrite = answering_tags({"code": -39001, "message": "finalized block not found"})
    with caplog.at_level(logging.WARNING):
        assert read_marks(node, 80, depth=10) is None
    assert "finalized block not found" in caplog.text
    proxy.rewrite = None
    assert read_marks(node, 80, depth=10) == Marks(ref(anvil, 48), ref(anvil, 16))


A, B, C, D = (BlockRef(n, f"0x{n:064x}") for n in (10, 20, 30, 40))


def test_a_move_is_announced_once_and_neither_mark_goes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert moved(None, Marks(B, A)) == Marks(B, A)
    assert moved(None, Marks(A, B)) == Marks(B, B)  # two replicas: safe never below final
    assert moved(Marks(B, A), Marks(B, A)) is None
    assert moved(Marks(B, A), Marks(C, A)) == Marks(C, A)  # only the safe one moved
    assert moved(Marks(B, A), Marks(D, C)) == Marks(D, C)
    # the node went back (a revert, a replica that lags another): nothing to announce,
    # so that the next move forward is announced under a new id
    assert moved(Marks(C, A), Marks(B, A)) is None
    with caplog.at_level(logging.WARNING):
        assert moved(Marks(D, C), Marks(B, A)) is None
    assert "finalized block 10 is below the recorded 30" in caplog.text
    assert moved(Marks(C, B), Marks(B, C)) == Marks(C, C)  # safe never below finalized


def test_block_finalized_travels_through_the_stream_encoding() -> None:
    event = Marks(C, A).event(8453)
    assert event == BlockFinalized(10, A.hash, C, 8453)
    again = from_fields(to_fields(event))
    assert again == event and again.id == event.id
    assert event.id == f"block.finalized:8453:10:{A.hash}:30:{C.hash}"
