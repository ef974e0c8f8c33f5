"""Two chains in one deployment, end to end: two anvils with their own chain ids, one
CHAINS file, one worker, one follower process and one web process, the official
JavaScript socket.io-client in their rooms.

- rooms never mix chains: the primary's blocks reach every client, the other chain's
  only `blocks:<id>`, each height once and in order per chain;
- a reorg on one chain while the other streams reaches that chain's room only;
- a subscription resumes its chain from `lastBlock`;
- the database equals each node, field by field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis
import requests

from chainpulse.devnet import wait_until
from tests.chains.conftest import OTHER, PRIMARY, Chains
from tests.harness.jsclient import JsClient


def blocks_of(client: JsClient, chain: int) -> list[int]:
    return [b["number"] for b in client.of("new-block") if b["chainId"] == chain]


def test_rooms_never_mix_chains_and_each_chain_is_indexed_as_its_node_has_it(
    chains: Chains, tmp_path: Path
) -> None:
    chains.mine(PRIMARY, 2)
    chains.mine(OTHER, 2)
    chains.wait_indexed()

    both = JsClient(chains.server.url, [], tmp_path, [{"channel": f"blocks:{OTHER}"}])
    primary_only = JsClient(chains.server.url, [], tmp_path)
    try:
        both.wait(lambda e, d: e == "ack", 20, "the subscription's ack")
        assert both.of("ack") == [{"success": True, "channel": f"blocks:{OTHER}"}]
        for _ in range(3):
            chains.mine(PRIMARY)
            chains.mine(OTHER)
        heads = {chain: anvil.head() for chain, anvil in chains.anvils.items()}
        for chain, head in heads.items():
            both.wait(
                lambda e, d, c=chain, h=head: (
                    e == "new-block" and (d["chainId"], d["number"]) == (c, h)
                ),
                30,
                f"chain {chain}'s block {head}",
            )
        primary_only.wait(
            lambda e, d: e == "new-block" and d["number"] == heads[PRIMARY],
            30,
            "the primary's head",
        )
        for chain in (PRIMARY, OTHER):
            seen = blocks_of(both, chain)
            assert seen == list(range(seen[0], heads[chain] + 1)), (chain, seen)  # +1, once
        # a client of no room gets the primary's blocks only
        assert {b["chainId"] for b in primary_only.of("new-block")} == {PRIMARY}
        assert blocks_of(primary_only, PRIMARY)[-1] == heads[PRIMARY]

        # a reorg of the other chain while the primary streams: its room only
        chains.anvils[OTHER].call("anvil_reorg", 2, [])
        chains.mine(PRIMARY)
        chains.mine(OTHER)
        reorg = both.wait(lambda e, d: e == "reorg", 30, "the other chain's reorg")
        assert reorg["chainId"] == OTHER and reorg["depth"] == 2
        assert primary_only.of("reorg") == []
        new_head = chains.anvils[OTHER].head()
        after = both.wait_after(
            "reorg",
            lambda e, d: e == "new-block" and (d["chainId"], d["number"]) == (OTHER, new_head),
            30,
            "the other chain's new head",
        )
        assert after["hash"] == chains.anvils[OTHER].block(new_head)["hash"]
        chains.wait_indexed()
    finally:
        both.close()
        primary_only.close()

    # the read API names every chain, and serves each one's blocks
    listed = requests.get(f"{chains.server.url}/api/chains", timeout=10).json()
    assert [(c["chainId"], c["name"], c["primary"]) for c in listed] == [
        (PRIMARY, "one", True),
        (OTHER, "two", False),
    ]
    other = requests.get(f"{chains.server.url}/api/blocks?chain={OTHER}&limit=1", timeout=10)
    [top] = other.json()
    assert (top["chainId"], top["number"]) == (OTHER, chains.anvils[OTHER].head())
    # and so does `chainpulse status`
    status = chains.cli("status", "--json")
    report: dict[str, Any] = json.loads(status.stdout)
    assert [(c["name"], c["chainId"], c["indexed"]) for c in report["chains"]] == [
        ("one", PRIMARY, chains.anvils[PRIMARY].head()),
        ("two", OTHER, chains.anvils[OTHER].head()),
    ], status.stderr


def test_a_subscription_resumes_its_chain_from_last_block(chains: Chains, tmp_path: Path) -> None:
    chains.mine(OTHER, 3)
    chains.mine(PRIMARY, 1)
    chains.wait_indexed()
    anvil = chains.anvils[OTHER]
    last = anvil.head()
    seen = anvil.block(last)["hash"]
    chains.mine(OTHER, 4)  # missed while away
    chains.wait_indexed()
    missed = list(range(last + 1, anvil.head() + 1))

    client = JsClient(
        chains.server.url,
        [],
        tmp_path,
        [{"channel": f"blocks:{OTHER}", "lastBlock": last, "lastBlockHash": seen}],
    )
    try:
        client.wait(
            lambda e, d: e == "new-block" and d["chainId"] == OTHER and d["number"] == missed[-1],
            30,
            "the missed blocks",
        )
        chains.mine(OTHER, 2)
        head = anvil.head()
        client.wait(
            lambda e, d: e == "new-block" and d["chainId"] == OTHER and d["number"] == head,
            30,
            "the live blocks after them",
        )
        # the missed ones, then the live ones: no gap, no duplicate
        assert blocks_of(client, OTHER) == list(range(last + 1, head + 1))
        assert client.of("reorg") == []
    finally:
        client.close()

    # a hash no longer canonical: a reorg first, then the blocks from its ancestor
    anvil.call("anvil_reorg", 1, [])
    chains.mine(OTHER)
    chains.wait_indexed()
    stale = JsClient(
        chains.server.url,
        [],
        tmp_path,
        [{"channel": f"blocks:{OTHER}", "lastBlock": head, "lastBlockHash": "0x" + "ab" * 32}],
    )
    try:
        reorg = stale.wait(lambda e, d: e == "reorg", 30, "the reorg first")
        assert reorg["chainId"] == OTHER and reorg["commonAncestor"]["number"] == head - 1
        top = anvil.head()
        stale.wait_after(
            "reorg",
            lambda e, d: e == "new-block" and d["number"] == top,
            30,
            "the canonical blocks after it",
        )
        assert blocks_of(stale, OTHER) == list(range(head, top + 1))
    finally:
        stale.close()


def test_an_unknown_chain_is_refused_and_named(chains: Chains, tmp_path: Path) -> None:
    client = JsClient(chains.server.url, [], tmp_path, [{"channel": "blocks:8453"}])
    try:
        ack = client.wait(lambda e, d: e == "ack", 20, "the refusal")
        assert ack == {"success": False, "error": "Invalid channel: no chain 8453"}
        error = client.wait(lambda e, d: e == "exception", 20, "the exception")
        assert error == {
            "status": "error",
            "message": "Invalid channel: no chain 8453",
            "channel": "blocks:8453",
        }
    finally:
        client.close()
    unknown = requests.get(f"{chains.server.url}/api/blocks?chain=8453", timeout=10)
    assert unknown.status_code == 404 and "no chain 8453" in unknown.json()["error"]
    # the streams are the chains' own: the primary's keeps its name
    client_redis = redis.Redis.from_url(chains.env["REDIS_URL"])
    try:
        chains.mine(OTHER)
        wait_until(lambda: client_redis.xlen(f"chainpulse:events:{OTHER}") > 0, 30, "its stream")
        entries = client_redis.xrange("chainpulse:events")
        assert {json.loads(f[b"data"]).get("chainId") for _, f in entries} <= {PRIMARY, None}
    finally:
        client_redis.close()
