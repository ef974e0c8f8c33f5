"""Following a Chainlink proxy (indexer.proxies): the switch block found by bisection
over past state, what a node that pruned that state leads to, and the kept history."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest

from indexer.errors import RpcError
from indexer.proxies import Following, ProxyWatch, with_history
from indexer.rpc import Node
from indexer.sources import parse_sources
from indexer.store import Store

PROXY = "0x" + "aa" * 20
OLD = "0x" + "01" * 20
NEW = "0x" + "02" * 20


class Chain:
    """`aggregator()` of the proxy by block: OLD before `switch`, NEW from it; state
    below `pruned` is refused as a pruned node refuses it. Counts the reads."""

    def __init__(self, switch: int, pruned: int = 0) -> None:
        self.switch, self.pruned, self.reads = switch, pruned, 0

    def call(self, method: str, *params: Any) -> str:
        assert method == "eth_call" and params[0]["to"] == PROXY
        block = int(params[1], 16)
        self.reads += 1
        if block < self.pruned:
            raise RpcError("missing trie node", -32000)
        address = NEW if block >= self.switch else OLD
        return "0x" + "00" * 12 + address[2:]


SOURCES = parse_sources(
    {"source": [{"name": "eth-usd", "kind": "chainlink", "token": "ETH", "quote": "USD",
                 "address": PROXY, "decimals": 8}]},
    "test.toml",
)  # fmt: skip


def watch(chain: Chain) -> ProxyWatch:
    return ProxyWatch(cast(Store, None), cast(Node, chain))


@pytest.mark.parametrize("switch", [101, 102, 150, 199, 200])
def test_the_switch_block_is_found_by_bisection(switch: int) -> None:
    chain = Chain(switch)
    source = SOURCES.sources[0]
    assert watch(chain)._switch(source, OLD, 100, 200, NEW) == (switch, NEW)
    assert chain.reads <= 7  # log2 of the 100 blocks between the checks


def test_a_node_that_pruned_the_state_takes_the_switch_after_the_last_check() -> None:
    chain = Chain(switch=150, pruned=190)
    assert watch(chain)._switch(SOURCES.sources[0], OLD, 100, 200, NEW) == (101, NEW)


def test_the_history_is_kept_and_applied() -> None:
    following = Following(((0, OLD), (150, NEW)), checked_at=200)
    assert Following.load(following.dump()) == following
    first = SOURCES.with_sources((replace(SOURCES.sources[0], aggregators=((0, OLD),)),))
    moved = with_history(first, {PROXY: following.dump()}).sources[0]
    assert moved.aggregators == ((0, OLD), (150, NEW))
    assert [moved.emitter_at(n) for n in (0, 149, 150, 10**6)] == [OLD, OLD, NEW, NEW]
    assert with_history(first, {}).sources[0].aggregators == ((0, OLD),)
