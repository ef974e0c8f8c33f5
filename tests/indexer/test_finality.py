"""A chain's finality marks (`indexer.finality`): read from a real anvil's `safe` and
`finalized` tags, from `FINALITY_DEPTH` below the head on a node that refuses those
tags (anvil behind a proxy that answers them with an error), and the rule that the
finalized mark never goes back."""

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


def refusing_tags(request: Any, reply: Any) -> Any:
    """A node of a chain without finality: the tags are an invalid argument."""
    if isinstance(request, list):  # a batch
        return [refusing_tags(one, answer) for one, answer in zip(request, reply, strict=True)]
    params = request.get("params") or [None]
    if request.get("method") == "eth_getBlockByNumber" and params[0] in ("safe", "finalized"):
        return {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32602,
                "message": f"invalid block tag {params[0]}"}}  # fmt: skip
    return reply


@pytest.fixture
def untagged(anvil: Anvil) -> Iterator[RpcProxy]:
    with RpcProxy(anvil.url) as proxy:
        proxy.rewrite = refusing_tags
        yield proxy


def test_without_the_tags_both_marks_are_the_block_finality_depth_below_the_head(
    anvil: Anvil, untagged: RpcProxy
) -> None:
    node = Node([untagged.url])
    anvil.mine(5)
    assert read_marks(node, anvil.head(), depth=10) is None  # shorter than the depth
    anvil.mine(20)
    assert read_marks(node, 25, depth=10) == Marks(ref(anvil, 15), ref(anvil, 15))


A, B, C, D = (BlockRef(n, f"0x{n:064x}") for n in (10, 20, 30, 40))


def test_a_move_is_announced_once_and_the_finalized_mark_never_goes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert moved(None, Marks(B, A)) == Marks(B, A)
    assert moved(Marks(B, A), Marks(B, A)) is None
    assert moved(Marks(B, A), Marks(C, A)) == Marks(C, A)  # only the safe one moved
    with caplog.at_level(logging.WARNING):
        # the node went back (a revert, a lagging replica): finalized kept, safe above it
        assert moved(Marks(D, C), Marks(B, A)) == Marks(C, C)
        assert moved(Marks(D, C), Marks(D, A)) is None
    assert "finalized block 10 is below the recorded 30" in caplog.text


def test_block_finalized_travels_through_the_stream_encoding() -> None:
    event = Marks(C, A).event(8453)
    assert event == BlockFinalized(10, A.hash, C, 8453)
    again = from_fields(to_fields(event))
    assert again == event and again.id == event.id
    assert event.id == f"block.finalized:8453:10:{A.hash}:30:{C.hash}"
