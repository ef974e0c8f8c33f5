"""The JSON-RPC client: error classification (unit) and Node against a real anvil."""

from collections.abc import Iterator
from typing import Any

import pytest

from chainpulse.devnet import Activity, Anvil, free_port
from indexer import rpc
from indexer.errors import (
    BlockNotFound,
    ChainMismatch,
    NodeUnavailable,
    RateLimited,
    RetryableError,
    RpcError,
)
from indexer.rpc import Node, _raise_rpc_error
from tests.harness.proxy import RpcProxy

URL = "http://127.0.0.1:8545"


@pytest.mark.parametrize(
    "error",
    [
        {"code": -32005, "message": "request limit reached"},
        {"code": -32029, "message": "slow down"},
        {"code": 429, "message": "Too Many Requests"},
        {"code": -32000, "message": "Rate limit exceeded for this key"},
        {"code": -32603, "message": "daily request count exceeded the quota"},
        {"code": -32000, "message": "TOO MANY REQUESTS"},
    ],
)
def test_rate_limit_errors_are_retryable(error: dict[str, object]) -> None:
    with pytest.raises(RateLimited, match="rate-limited eth_getBlockByNumber") as info:
        _raise_rpc_error(URL, "eth_getBlockByNumber", error)
    assert isinstance(info.value, RetryableError)


@pytest.mark.parametrize(
    ("error", "kind"),
    [("Too many requests, slow down", RateLimited), ("internal error", RpcError)],
)
def test_bare_string_errors_are_classified_too(error: str, kind: type[Exception]) -> None:
    with pytest.raises(kind, match=error):
        _raise_rpc_error(URL, "eth_blockNumber", error)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ({"code": -32601, "message": "Method not found"}, -32601),
        ({"code": -32602, "message": "invalid argument 0"}, -32602),
        ({"code": -32000, "message": "execution reverted"}, -32000),
        ({}, None),
    ],
)
def test_other_rpc_errors_are_fatal_and_keep_their_code(
    error: dict[str, object], code: int | None
) -> None:
    with pytest.raises(RpcError, match="refused eth_getBlockReceipts") as info:
        _raise_rpc_error(URL, "eth_getBlockReceipts", error)
    assert info.value.code == code
    assert not isinstance(info.value, RetryableError)


# Against a real node -----------------------------------------------------------------


def test_reads_head_chain_id_and_blocks(anvil: Anvil) -> None:
    anvil.mine(3)
    node = Node([anvil.url], timeout=5)
    assert node.chain_id() == 31337
    assert node.head() == 3
    ((block, receipts),) = node.blocks_with_receipts([2])
    assert block["hash"] == anvil.block(2)["hash"]
    assert receipts == []
    assert node.block_hashes([1, 2, 9]) == {
        1: anvil.block(1)["hash"],
        2: anvil.block(2)["hash"],
        9: None,
    }


def test_block_above_the_head_is_not_found_yet(anvil: Anvil) -> None:
    node = Node([anvil.url], timeout=5)
    with pytest.raises(BlockNotFound, match="block 5 is not available"):
        node.blocks_with_receipts([0, 5])


def test_unreachable_node_is_retryable_and_names_the_url() -> None:
    port = free_port()
    node = Node([f"http://u:secret@127.0.0.1:{port}"], timeout=2)
    with pytest.raises(
        NodeUnavailable, match=rf"node at http://u:\*\*\*@127.0.0.1:{port} is unreachable"
    ):
        node.head()


def test_fails_over_to_the_next_endpoint(anvil: Anvil) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    node = Node([closed, anvil.url], timeout=5)
    anvil.mine(2)
    assert node.head() == 2
    assert node.url == anvil.url
    assert len(node.blocks_with_receipts([1, 2])) == 2


def test_frozen_node_times_out_as_node_unavailable(anvil: Anvil) -> None:
    node = Node([anvil.url], timeout=1)
    assert node.head() == 0
    with anvil.frozen(), pytest.raises(NodeUnavailable, match="timed out"):
        node.head()
    assert Node([anvil.url], timeout=30).head() == 0


def test_endpoints_on_different_chains_are_refused(anvil: Anvil) -> None:
    other = Anvil(chain_id=4242).start()
    try:
        node = Node([anvil.url, other.url], timeout=5)
        assert node.head() == 0
        anvil.stop()  # fail over to the other chain's node
        with pytest.raises(
            ChainMismatch, match="serves chain 4242, other endpoints serve chain 31337"
        ):
            node.head()
    finally:
        other.stop()


@pytest.fixture
def proxy(anvil: Anvil) -> Iterator[RpcProxy]:
    with RpcProxy(anvil.url) as p:
        yield p


def test_http_429_raises_rate_limited_then_recovers(proxy: RpcProxy) -> None:
    node = Node([proxy.url], timeout=5)
    assert node.head() == 0  # binds the chain id through the proxy first
    proxy.answer_next(3)
    for _ in range(3):
        with pytest.raises(RateLimited, match="answered HTTP 429"):
            node.head()
    assert node.head() == 0
    assert proxy.answered_canned == 3


def test_json_rpc_rate_limit_error_for_the_whole_batch_raises_rate_limited(
    proxy: RpcProxy,
) -> None:
    node = Node([proxy.url], timeout=5)
    node.head()
    body = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"limit exceeded"}}'
    proxy.answer_next(1, status=200, body=body)
    with pytest.raises(RateLimited, match="limit exceeded"):
        node.blocks_with_receipts([0])
    assert len(node.blocks_with_receipts([0])) == 1


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (503, b"unavailable", NodeUnavailable, "answered HTTP 503"),
        (200, b"<html>not json", NodeUnavailable, "malformed response"),
        (401, b"unauthorized", RpcError, "answered HTTP 401"),
    ],
)
def test_http_failures_are_classified(
    proxy: RpcProxy, status: int, body: bytes, error: type[Exception], message: str
) -> None:
    node = Node([proxy.url], timeout=5)
    node.head()
    proxy.answer_next(1, status=status, body=body)
    with pytest.raises(error, match=message):
        node.head()


def test_rate_limited_endpoint_fails_over(anvil: Anvil, proxy: RpcProxy) -> None:
    node = Node([proxy.url, anvil.url], timeout=5)
    node.head()
    proxy.answer_next(1)
    anvil.mine()
    assert node.head() == 1
    assert node.url == anvil.url


def test_node_without_eth_getblockreceipts_falls_back_to_per_transaction_receipts(
    anvil: Anvil, proxy: RpcProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc, "MAX_BATCH_CALLS", 3)
    activity = Activity(anvil)
    first = activity.block(count=4, reverts=1, deploys=1)
    second = activity.block(count=3)
    methods: list[str] = []
    receipt_batches: list[int] = []

    def refuse_block_receipts(request: Any, reply: Any) -> Any:
        calls = request if isinstance(request, list) else [request]
        replies = reply if isinstance(reply, list) else [reply]
        refused = {c["id"] for c in calls if c["method"] == "eth_getBlockReceipts"}
        methods.extend(c["method"] for c in calls)
        if calls[0]["method"] == "eth_getTransactionReceipt":
            receipt_batches.append(len(calls))
        out = [
            {"jsonrpc": "2.0", "id": r["id"], "error": {"code": -32601, "message": "not found"}}
            if r["id"] in refused
            else r
            for r in replies
        ]
        return out if isinstance(reply, list) else out[0]

    proxy.rewrite = refuse_block_receipts
    node = Node([proxy.url], timeout=5)

    fetched = node.blocks_with_receipts([first, second])

    direct = Node([anvil.url], timeout=5).blocks_with_receipts([first, second])
    assert fetched == direct
    assert "eth_getTransactionReceipt" in methods
    assert len(fetched[0][1]) == 4 and len(fetched[1][1]) == 3
    assert receipt_batches == [3, 3, 1]  # 7 receipts, at most MAX_BATCH_CALLS per batch
    methods.clear()
    node.blocks_with_receipts([second])  # remembers: no second try of the missing method
    assert "eth_getBlockReceipts" not in methods
