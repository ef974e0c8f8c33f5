"""Contract event subscriptions against the fake transport and a real SQLite database:
rooms, filters, ids, refusals, routing only to what matches, resume from the stored
events, and unsubscribe by id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from indexer import models as m
from indexer.contracts import load_contracts
from realtime.push.subscriptions import EventRouter
from tests.harness.events import block_event
from tests.harness.seeded import CHAIN, insert_blocks, make_database
from tests.unit.test_push import Realtime

TOKEN = "0x" + "11" * 20
ALICE, BOB = "0x" + "a1" * 20, "0x" + "b0" * 20
TRANSFER = "event Transfer(address indexed from, address indexed to, uint256 value)"
APPROVAL = "event Approval(address indexed owner, address indexed spender, uint256 value)"


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Realtime]:
    (tmp_path / "contracts.toml").write_text(
        f'[[contract]]\nname = "Token"\naddress = "{TOKEN}"\n'
        f'events = ["{TRANSFER}", "{APPROVAL}"]\n'
    )
    one = Realtime(
        make_database(tmp_path / "db.sqlite"),
        contracts_file=load_contracts(str(tmp_path / "contracts.toml")),
    )
    yield one
    one.db.dispose()


def transfer(number: int, index: int, sender: str, to: str, value: int = 1) -> dict[str, Any]:
    return {
        "contract": "Token", "event": "Transfer", "address": TOKEN, "blockNumber": number,
        "blockHash": block_event(number).blockHash, "blockTimestamp": 1_700_000_000 + number,
        "logIndex": index, "transactionHash": "0x" + f"{number * 100 + index:064x}",
        "args": {"from": sender, "to": to, "value": str(value)},
    }  # fmt: skip


def push(rt: Realtime, number: int, *events: dict[str, Any]) -> None:
    from dataclasses import replace

    rt.feed.handle(replace(block_event(number), contractEvents=list(events)))


def received(rt: Realtime, sid: str) -> list[tuple[int, int, list[str]]]:
    return [
        (e["blockNumber"], e["logIndex"], e["subscriptions"])  # type: ignore[index]
        for e in rt.fanout.events(sid, "contract-event")
    ]


def subscribe(rt: Realtime, sid: str, **payload: Any) -> Any:
    return rt.gateway.event(sid, "subscribe", [payload])


def test_rooms_filters_and_ids(rt: Realtime) -> None:
    for sid in ("all", "to-bob", "from-alice-to-bob", "approvals"):
        rt.join(sid)
    every = subscribe(rt, "all", channel="events:Token")
    to_bob = subscribe(
        rt,
        "to-bob",
        channel="events:Token.Transfer",
        filter={"to": BOB.upper().replace("0X", "0x")},
    )
    both = subscribe(rt, "from-alice-to-bob", channel="events:Token.Transfer",
                     filter={"from": [ALICE], "to": BOB})  # fmt: skip
    subscribe(rt, "approvals", channel="events:Token.Approval")
    assert every["success"] and every["channel"] == "events:Token"
    assert to_bob["channel"] == "events:Token.Transfer" and to_bob["id"] != every["id"]
    # the same subscription asked again, by anyone, is the same id
    rt.join("again")
    assert subscribe(rt, "again", channel="events:Token.Transfer", filter={"to": BOB}) == to_bob

    push(rt, 1, transfer(1, 0, ALICE, BOB), transfer(1, 3, BOB, ALICE))
    push(rt, 2, transfer(2, 1, "0x" + "cc" * 20, BOB))
    assert received(rt, "all") == [
        (1, 0, [every["id"]]),
        (1, 3, [every["id"]]),
        (2, 1, [every["id"]]),
    ]
    assert received(rt, "to-bob") == [(1, 0, [to_bob["id"]]), (2, 1, [to_bob["id"]])]
    assert received(rt, "from-alice-to-bob") == [(1, 0, [both["id"]])]
    assert received(rt, "approvals") == []
    [first] = rt.fanout.events("to-bob", "contract-event")[:1]
    assert first["args"] == {"from": ALICE, "to": BOB, "value": "1"}  # type: ignore[index]
    assert first["chainId"] == CHAIN and first["contract"] == "Token"  # type: ignore[index]
    # the new-block of a block comes before its events
    assert rt.fanout.names("to-bob")[-2:] == ["new-block", "contract-event"]

    # unsubscribe by id: nothing more, and an unknown id is refused
    assert rt.gateway.event("to-bob", "unsubscribe", [{"id": to_bob["id"]}]) == {"success": True}
    push(rt, 3, transfer(3, 0, ALICE, BOB))
    assert len(received(rt, "to-bob")) == 2 and len(received(rt, "again")) == 3
    assert rt.gateway.event("to-bob", "unsubscribe", [{"id": to_bob["id"]}])["success"] is False


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"channel": "events:Nope"}, "Invalid channel: no contract 'Nope'"),
        ({"channel": "events:Token.Mint"}, "Invalid channel: Token has no event 'Mint'"),
        ({"channel": "events:Token.Transfer", "filter": {"value": "1"}},
         "Invalid filter: 'value' is not an indexed argument of Transfer (indexed: from, to)"),
        ({"channel": "events:Token.Transfer", "filter": {"sender": ALICE}},
         "Invalid filter: 'sender' is unknown of Transfer (indexed: from, to)"),
        ({"channel": "events:Token", "filter": {"to": BOB}},
         "Invalid filter: a filter needs one event's channel (events:Token.<event>)"),
        ({"channel": "events:Token.Transfer", "filter": {"to": "bob"}},
         "Invalid filter: 'to': expected an address (0x and 40 hex digits)"),
        ({"channel": "events:Token.Transfer", "filter": ["to"]},
         "Invalid filter: expected an object {argument: value or [values]}"),
        ({"channel": "events:Token.Transfer", "filter": {"to": [BOB] * 33}},
         "Invalid filter: more than 32 values"),
    ],
)  # fmt: skip
def test_a_bad_channel_or_filter_is_refused_and_named(
    rt: Realtime, payload: dict[str, Any], error: str
) -> None:
    rt.join("a")
    assert subscribe(rt, "a", **payload) == {"success": False, "error": error}
    [exception] = rt.fanout.events("a", "exception")
    assert exception == {"status": "error", "message": error, "channel": payload["channel"]}


def test_routing_touches_the_matching_subscriptions_only() -> None:
    """10,000 subscriptions each filtered on its own recipient: an event is routed by
    looking its values up, so it reaches exactly the one it matches."""
    from indexer.contracts import Contract
    from indexer.event_abi import parse_signature

    contract = Contract("Token", 1, (parse_signature(TRANSFER),), (TOKEN,))
    router = EventRouter({"Token": ("~live", contract)})
    subs = [
        router.subscription("Token.Transfer", {"to": "0x" + f"{n:040x}"}) for n in range(10_000)
    ]
    for n, sub in enumerate(subs):
        router.add(f"s{n}", sub)
    event = transfer(1, 0, ALICE, "0x" + f"{4321:040x}")
    calls: list[str] = []
    original = type(subs[0]).matches

    def counted(self: Any, values: Any) -> bool:
        calls.append(self.id)
        return original(self, values)

    type(subs[0]).matches = counted  # type: ignore[method-assign]
    try:
        assert router.route(event) == [subs[4321]]
    finally:
        type(subs[0]).matches = original  # type: ignore[method-assign]
    assert calls == [subs[4321].id]  # one candidate looked at, not 10,000


def test_a_subscription_resumes_from_the_stored_events_then_live(rt: Realtime) -> None:
    url = rt.settings.database_url
    insert_blocks(url, range(1, 6))
    rows = [transfer(n, 0, ALICE, BOB if n % 2 else ALICE) for n in range(1, 6)]
    _store(rt, rows)
    rt.feed.start_at(5)
    rt.join("a")
    ack = subscribe(rt, "a", channel="events:Token.Transfer", filter={"to": BOB}, lastBlock=1)
    rt.fanout.settle()  # the catch-up runs as a job of its own
    push(rt, 6, transfer(6, 2, ALICE, BOB), transfer(6, 3, BOB, ALICE))
    # blocks 3 and 5 from the database (to bob, after block 1), then 6 live, once each
    assert received(rt, "a") == [(3, 0, [ack["id"]]), (5, 0, [ack["id"]]), (6, 2, [ack["id"]])]


def test_resubscribing_with_last_block_while_live_sends_each_event_once(rt: Realtime) -> None:
    """Block 2 is pushed while the catch-up reads the database: the client, out of the
    live room until caught up, gets it once (from the next read), not twice."""
    rt.join("a")
    ack = subscribe(rt, "a", channel="events:Token.Transfer")
    insert_blocks(rt.settings.database_url, [1, 2])
    _store(rt, [transfer(1, 0, ALICE, BOB)])
    push(rt, 1, transfer(1, 0, ALICE, BOB))
    read = rt.db.read

    def read_while_block_two_arrives(*args: Any) -> Any:
        rt.db.read = read  # type: ignore[method-assign]
        rows = read(*args)
        _store(rt, [transfer(2, 0, ALICE, BOB)])
        push(rt, 2, transfer(2, 0, ALICE, BOB))
        return rows

    rt.db.read = read_while_block_two_arrives  # type: ignore[method-assign]
    subscribe(rt, "a", channel="events:Token.Transfer", lastBlock=0)
    rt.fanout.settle()
    push(rt, 3, transfer(3, 0, ALICE, BOB))
    sub = [ack["id"]]
    # block 1 live, then asked again from block 0: 1 (read), 2 (read again), 3 live
    assert received(rt, "a") == [(1, 0, sub), (1, 0, sub), (2, 0, sub), (3, 0, sub)]


def test_the_fourth_indexed_argument_of_an_anonymous_event_is_not_a_filter() -> None:
    from indexer.contracts import Contract
    from indexer.event_abi import parse_signature

    event = parse_signature(
        "E(uint8 indexed a, uint8 indexed b, uint8 indexed c, uint8 indexed d) anonymous"
    )
    router = EventRouter({"X": ("~live", Contract("X", 1, (event,), (TOKEN,)))})
    router.subscription("X.E", {"c": 1})
    with pytest.raises(ValueError, match="fourth indexed argument"):
        router.subscription("X.E", {"d": 1})


def _store(rt: Realtime, events: list[dict[str, Any]]) -> None:
    with sa.create_engine(rt.settings.database_url).begin() as conn:
        conn.execute(
            m.contract_events.insert(),
            [
                {
                    "chain_id": CHAIN, "block_number": r["blockNumber"], "log_index": r["logIndex"],
                    "block_hash": r["blockHash"], "block_timestamp": r["blockTimestamp"],
                    "transaction_hash": r["transactionHash"], "address": TOKEN,
                    "contract": "Token", "event": "Transfer",
                    "signature": "Transfer(address,address,uint256)", "args": r["args"],
                    "indexed_1": r["args"]["from"], "indexed_2": r["args"]["to"],
                    "indexed_3": None,
                }
                for r in events
            ],
        )  # fmt: skip
