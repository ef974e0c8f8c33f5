"""Chains in one deployment, end to end: two anvils (three on PostgreSQL for the rooms)
with their own chain ids, one CHAINS file, one worker, one follower process and one web
process, the official JavaScript socket.io-client in their rooms.

- rooms never mix chains: the primary's blocks reach every client, another chain's
  only its `blocks:<id>`, each height once and in order per chain;
- a reorg on one chain while the other streams reaches that chain's room only;
- a subscription resumes its chain from `lastBlock`;
- the database equals each node, field by field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from chainpulse.devnet import wait_until
from tests.chains.conftest import OTHER, PRIMARY, THIRD, Chains, Layout
from tests.harness.jsclient import JsClient


def blocks_of(client: JsClient, chain: int) -> list[int]:
    return [b["number"] for b in client.of("new-block") if b["chainId"] == chain]


@pytest.mark.parametrize("chains", [Layout(3, "postgresql")], indirect=True, ids=str)
def test_rooms_never_mix_chains_and_each_chain_is_indexed_as_its_node_has_it(
    chains: Chains, tmp_path: Path
) -> None:
    """Three chains on PostgreSQL: a client of every room, one of the third chain's room
    only, one of none."""
    ids = list(chains.anvils)
    for chain in ids:
        chains.mine(chain, 2)
    chains.wait_indexed()

    every = JsClient(
        chains.server.url, [], tmp_path, [{"channel": f"blocks:{c}"} for c in (OTHER, THIRD)]
    )
    third_only = JsClient(chains.server.url, [], tmp_path, [{"channel": f"blocks:{THIRD}"}])
    primary_only = JsClient(chains.server.url, [], tmp_path)
    clients = (every, third_only, primary_only)
    try:
        every.wait(lambda e, d: e == "ack" and d["channel"] == f"blocks:{THIRD}", 20, "acks")
        third_only.wait(lambda e, d: e == "ack", 20, "the subscription's ack")
        assert third_only.of("ack") == [{"success": True, "channel": f"blocks:{THIRD}"}]
        for _ in range(3):
            for chain in ids:
                chains.mine(chain)
        heads = {chain: anvil.head() for chain, anvil in chains.anvils.items()}
        for client, chains_of in (
            (every, ids),
            (third_only, [PRIMARY, THIRD]),
            (primary_only, [PRIMARY]),
        ):
            for chain in chains_of:
                client.wait(
                    lambda e, d, c=chain: (
                        e == "new-block" and (d["chainId"], d["number"]) == (c, heads[c])
                    ),
                    30,
                    f"chain {chain}'s block {heads[chain]}",
                )
            # each chain's heights rise by one, each once; no chain not subscribed
            assert {b["chainId"] for b in client.of("new-block")} == set(chains_of)
            for chain in chains_of:
                seen = blocks_of(client, chain)
                assert seen == list(range(seen[0], heads[chain] + 1)), (chain, seen)

        # a reorg of the second chain while the others stream: its room only
        chains.anvils[OTHER].call("anvil_reorg", 2, [])
        for chain in ids:
            chains.mine(chain)
        reorg = every.wait(lambda e, d: e == "reorg", 30, "the second chain's reorg")
        assert reorg["chainId"] == OTHER and reorg["depth"] == 2
        new_head = chains.anvils[OTHER].head()
        after = every.wait_after(
            "reorg",
            lambda e, d: e == "new-block" and (d["chainId"], d["number"]) == (OTHER, new_head),
            30,
            "the second chain's new head",
        )
        assert after["hash"] == chains.anvils[OTHER].block(new_head)["hash"]
        third_head = chains.anvils[THIRD].head()
        third_only.wait(
            lambda e, d: e == "new-block" and (d["chainId"], d["number"]) == (THIRD, third_head),
            30,
            "the third chain's head after the reorg",
        )
        assert third_only.of("reorg") == [] and primary_only.of("reorg") == []
        assert OTHER not in {b["chainId"] for b in third_only.of("new-block")}
        chains.wait_indexed()
    finally:
        for client in clients:
            client.close()

    # the read API names every chain, and serves each one's blocks
    listed = requests.get(f"{chains.server.url}/api/chains", timeout=10).json()
    assert [(c["chainId"], c["name"], c["primary"]) for c in listed] == [
        (PRIMARY, "one", True),
        (OTHER, "two", False),
        (THIRD, "three", False),
    ]
    for chain in (OTHER, THIRD):
        served = requests.get(f"{chains.server.url}/api/blocks?chain={chain}&limit=1", timeout=10)
        [top] = served.json()
        assert (top["chainId"], top["number"]) == (chain, chains.anvils[chain].head())
    # and so does `chainpulse status`
    status = chains.cli("status", "--json")
    report: dict[str, Any] = json.loads(status.stdout)
    assert [(c["name"], c["chainId"], c["indexed"]) for c in report["chains"]] == [
        ("one", PRIMARY, chains.anvils[PRIMARY].head()),
        ("two", OTHER, chains.anvils[OTHER].head()),
        ("three", THIRD, chains.anvils[THIRD].head()),
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
