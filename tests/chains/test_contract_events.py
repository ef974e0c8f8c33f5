"""Contract events end to end, with the official JavaScript socket.io-client: a
TestToken on each of two chains and every pair of the real Uniswap V2 factory, decoded
by the workers, pushed by the web process to filtered subscriptions, each event as it is
stored; a pair created and used in one block; a reorg through the events of the second
chain (its `reorg` before the replacement's events, to a client outside its blocks
room); a subscription resumed with its filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from chainpulse import protocols
from indexer import models as m
from tests.chains.conftest import OTHER, PRIMARY, Chains, Layout
from tests.harness.jsclient import JsClient

CONTRACTS = [Layout(2, "sqlite", contracts=True)]
RECIPIENT, SOMEONE = "0x" + "7e" * 20, "0x" + "50" * 20


def stored(chains: Chains, contract: str) -> list[dict[str, Any]]:
    e = m.contract_events.c
    with chains.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.contract_events)
            .where(e.contract == contract)
            .order_by(e.block_number, e.log_index)
        ).mappings()
        return [dict(r) for r in rows]


def as_pushed(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "chainId": row["chain_id"], "contract": row["contract"], "event": row["event"],
        "address": row["address"], "blockNumber": row["block_number"],
        "blockHash": row["block_hash"], "logIndex": row["log_index"],
        "transactionHash": row["transaction_hash"], "blockTimestamp": row["block_timestamp"],
        "args": row["args"],
    }  # fmt: skip


def events_of(client: JsClient, sub: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in e.items() if k not in ("timestamp", "subscriptions")}
        for e in client.of("contract-event")
        if sub in e["subscriptions"]
    ]


def ack_of(client: JsClient, channel: str) -> dict[str, Any]:
    ack: dict[str, Any] = client.wait(
        lambda e, d: e == "ack" and d.get("channel") == channel, 20, f"the ack of {channel}"
    )
    assert ack["success"], ack
    return ack


@pytest.mark.parametrize("chains", CONTRACTS, indirect=True, ids=str)
def test_filtered_subscriptions_get_their_chains_events_as_stored(
    chains: Chains, tmp_path: Path
) -> None:
    deployed = chains.deployed
    assert deployed is not None
    token, token2 = deployed.tokens[PRIMARY], deployed.tokens[OTHER]
    c, c2 = deployed.contracts[PRIMARY], deployed.contracts[OTHER]
    chains.mine(PRIMARY)
    chains.mine(OTHER)
    chains.wait_indexed()
    filtered = JsClient(chains.server.url, [], tmp_path, [
        {"channel": "events:Token.Transfer", "filter": {"to": "0x" + RECIPIENT[2:].upper()}},
        {"channel": "events:Token2"},
        {"channel": "events:Pair.Sync"},
    ])  # fmt: skip
    everything = JsClient(chains.server.url, [], tmp_path, [{"channel": "events:Token"}])
    try:
        to_recipient = ack_of(filtered, "events:Token.Transfer")["id"]
        on_two = ack_of(filtered, "events:Token2")["id"]
        syncs = ack_of(filtered, "events:Pair.Sync")["id"]
        every = ack_of(everything, "events:Token")["id"]

        c.call(token, "transfer", RECIPIENT, 5)
        c.call(token, "transfer", SOMEONE, 6)
        c2.call(token2, "transfer", RECIPIENT, 7)
        # a pair created and used in one block: its first Sync is in its creation block
        usdc = protocols.token(c, "USDC", 6)
        pair = protocols.V2Pair.create(c, deployed.factory, token, 10**21, usdc, 3 * 10**12)
        c.call(token, "transfer", RECIPIENT, 8)
        chains.wait_indexed()

        for client, sub, contract, keep in (
            (filtered, to_recipient, "Token", lambda r: r["args"]["to"] == RECIPIENT),
            (filtered, on_two, "Token2", lambda r: True),
            (filtered, syncs, "Pair", lambda r: r["event"] == "Sync"),
            (everything, every, "Token", lambda r: True),
        ):
            expected = [as_pushed(r) for r in stored(chains, contract) if keep(r)]
            assert expected, contract
            client.wait(
                lambda e, d, s=sub, last=expected[-1]: (
                    e == "contract-event" and s in d["subscriptions"]
                    and (d["blockNumber"], d["logIndex"]) == (last["blockNumber"], last["logIndex"])
                ),
                30,
                f"{contract}'s last event for subscription {sub}",
            )  # fmt: skip
            assert events_of(client, sub) == expected  # in chain order, each once, as stored
        values = [e["args"]["value"] for e in events_of(filtered, to_recipient)]
        assert values == ["5", "8"]  # not SOMEONE's
        assert {e["chainId"] for e in events_of(filtered, on_two)} == {OTHER}
        [sync] = events_of(filtered, syncs)
        assert sync["address"] == pair.address
        assert {e["chainId"] for e in events_of(everything, every)} == {PRIMARY}
    finally:
        filtered.close()
        everything.close()

    # resumed with its filter from the block of its first event (the transfer of 5): the
    # two it missed after it, then live, once each
    missed_from = stored(chains, "Token")[0]
    c.call(token, "transfer", RECIPIENT, 9)
    resumed = JsClient(chains.server.url, [], tmp_path, [{
        "channel": "events:Token.Transfer", "filter": {"to": RECIPIENT},
        "lastBlock": missed_from["block_number"], "lastBlockHash": missed_from["block_hash"],
    }])  # fmt: skip
    try:
        sub = ack_of(resumed, "events:Token.Transfer")["id"]
        assert sub == to_recipient  # the same channel and filter: the same id
        c.call(token, "transfer", RECIPIENT, 10)
        resumed.wait(
            lambda e, d: e == "contract-event" and d["args"]["value"] == "10", 30, "the live one"
        )
        expected = [
            as_pushed(r) for r in stored(chains, "Token")
            if r["args"]["to"] == RECIPIENT and r["block_number"] > missed_from["block_number"]
        ]  # fmt: skip
        assert [e["args"]["value"] for e in expected] == ["8", "9", "10"]  # after 5's block
        assert events_of(resumed, sub) == expected
    finally:
        resumed.close()

    # the read API: newest first, a page at a time, filtered as subscriptions are
    api = chains.server.url + "/api"
    newest = [
        as_pushed(r) for r in reversed(stored(chains, "Token")) if r["args"]["to"] == RECIPIENT
    ]
    first = requests.get(f"{api}/events/Token.Transfer?arg.to={RECIPIENT}&limit=3", timeout=10)
    assert first.status_code == 200 and first.json()["events"] == newest[:3]
    cursor = first.json()["next"]
    rest = requests.get(
        f"{api}/events/Token.Transfer?arg.to={RECIPIENT}&cursor={cursor}", timeout=10
    )
    assert rest.json() == {"events": newest[3:], "next": None}
    bounded = requests.get(
        f"{api}/events/Token2.Transfer?chain={OTHER}&from_block=1&to_block=10000", timeout=10
    ).json()["events"]
    assert bounded == [as_pushed(r) for r in reversed(stored(chains, "Token2"))]
    children = requests.get(f"{api}/contracts/Pair/addresses", timeout=10).json()
    assert [c["address"] for c in children["children"]] == [pair.address]
    for path, status, says in (
        ("/events/Token.Transfer?arg.value=5", 400, "'value' is not an indexed argument"),
        ("/events/Token.Mint", 404, "Token has no event 'Mint'"),
        (f"/events/Token.Transfer?chain={OTHER}", 404, f"a contract of chain {PRIMARY}"),
        ("/events/Token.Transfer?cursor=x", 400, "cursor"),
        ("/contracts/Nope/addresses", 404, "no contract 'Nope'"),
    ):
        answer = requests.get(api + path, timeout=10)
        assert answer.status_code == status and says in answer.json()["error"], answer.text


@pytest.mark.parametrize("chains", CONTRACTS, indirect=True, ids=str)
def test_a_reorg_retracts_events_before_the_replacements_arrive(
    chains: Chains, tmp_path: Path
) -> None:
    """The client holds only `events:Token2.Transfer`, not the chain's blocks room: the
    chain's `reorg` still reaches it, before any event of the replacement blocks, and
    no event of an orphaned block comes after it."""
    deployed = chains.deployed
    assert deployed is not None
    token2, c2 = deployed.tokens[OTHER], deployed.contracts[OTHER]
    anvil = chains.anvils[OTHER]
    chains.mine(OTHER)
    chains.wait_indexed()
    client = JsClient(chains.server.url, [], tmp_path, [{"channel": "events:Token2.Transfer"}])
    try:
        sub = ack_of(client, "events:Token2.Transfer")["id"]
        c2.call(token2, "transfer", SOMEONE, 1)
        orphaned = anvil.block(anvil.head())["hash"]
        client.wait(lambda e, d: e == "contract-event" and d["blockHash"] == orphaned, 30,
                    "the event of the block to be orphaned")  # fmt: skip
        anvil.call("anvil_reorg", 1, [])
        c2.call(token2, "transfer", RECIPIENT, 2)
        reorg = client.wait(lambda e, d: e == "reorg", 30, "the second chain's reorg")
        assert reorg["chainId"] == OTHER and orphaned in [r["hash"] for r in reorg["removed"]]
        replacement = client.wait_after(
            "reorg", lambda e, d: e == "contract-event" and d["args"]["value"] == "2", 30,
            "the replacement's event",
        )  # fmt: skip
        assert replacement["blockHash"] == anvil.block(replacement["blockNumber"])["hash"]
        chains.wait_indexed()
        at = next(i for i, (name, _) in enumerate(client.events) if name == "reorg")
        after = [data for name, data in client.events[at:] if name == "contract-event"]
        assert orphaned not in {e["blockHash"] for e in after}
        assert [as_pushed(r) for r in stored(chains, "Token2")] == [
            {k: v for k, v in e.items() if k not in ("timestamp", "subscriptions")}
            for e in client.of("contract-event")
            if e["blockHash"] != orphaned and sub in e["subscriptions"]
        ]
    finally:
        client.close()
