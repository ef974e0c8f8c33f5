"""Contract events stored in the block's own transaction, on SQLite and PostgreSQL: a
listed ERC-20's transfers, and the swaps and syncs of every pair the real Uniswap V2
factory creates, a pair created and used in one block and one whose later blocks were
committed before its creation; a reorg takes the events and the children with it; a
filter on an indexed argument is an index lookup."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from eth_utils import keccak

from chainpulse import protocols
from chainpulse.contracts import Contracts, artifacts
from chainpulse.devnet import Anvil
from indexer import models as m
from indexer.contracts import load_contracts
from indexer.pipeline import Indexer
from indexer.store import Store
from tests.harness.indexer import build_indexer, close_indexer

PAIR_CREATED = "PairCreated(address indexed token0, address indexed token1, address pair, uint256)"
SWAP = (
    "event Swap(address indexed sender, uint256 amount0In, uint256 amount1In, "
    "uint256 amount0Out, uint256 amount1Out, address indexed to)"
)
SYNC = "event Sync(uint112 reserve0, uint112 reserve1)"


class Market:
    """Two tokens and the real Uniswap V2 factory on anvil; blocks of several calls."""

    def __init__(self, anvil: Anvil) -> None:
        self.anvil = anvil
        self.c = Contracts(anvil)
        self.a = protocols.token(self.c, "A", 18)
        self.b = protocols.token(self.c, "B", 6)
        self.c3 = protocols.token(self.c, "C", 18)
        self.factory = self.c.deploy("UniswapV2Factory", self.c.sender)
        self.after_setup = anvil.head()

    def pair_address(self, x: str, y: str) -> str:
        """Where the factory will create the pair of x and y (CREATE2)."""
        t0, t1 = protocols.ordered(x, y)
        salt = keccak(bytes.fromhex(t0[2:]) + bytes.fromhex(t1[2:]))
        code = keccak(hexstr=artifacts()["UniswapV2Pair"]["bytecode"])
        raw = keccak(b"\xff" + bytes.fromhex(self.factory[2:]) + salt + code)
        return "0x" + raw[12:].hex()

    def block(self, calls: list[dict[str, str]]) -> int:
        """`calls` mined into one block; its number."""
        self.anvil.call("evm_setAutomine", False)
        try:
            for tx in calls:
                self.anvil.call("eth_sendTransaction", tx)
            self.anvil.mine()
        finally:
            self.anvil.call("evm_setAutomine", True)
        number = self.anvil.head()
        for tx in self.anvil.block(number)["transactions"]:
            receipt = self.anvil.call("eth_getTransactionReceipt", tx)
            assert receipt["status"] == "0x1", receipt
        return number

    def create_and_fund(self, x: str, y: str) -> tuple[str, list[dict[str, str]]]:
        """The calls that create the pair of x and y and mint its first liquidity."""
        pair = self.pair_address(x, y)
        self.c.at(pair, "UniswapV2Pair")
        c = self.c
        return pair, [
            c.transaction(self.factory, "createPair", x, y, gas=6_000_000),
            c.transaction(x, "transfer", pair, 10**21),
            c.transaction(y, "transfer", pair, 3 * 10**12),
            c.transaction(pair, "mint", c.sender, gas=500_000),
        ]

    def swap(self, pair: str) -> list[dict[str, str]]:
        """A swap paying 10^15 of the pair's token0."""
        t0, t1 = protocols.ordered(*self.tokens_of(pair))
        return protocols.V2Pair(self.c, pair, t0, t1).swap_calls(10**15, True)

    def tokens_of(self, pair: str) -> tuple[str, str]:
        return self.c.read(pair, "token0").lower(), self.c.read(pair, "token1").lower()


@pytest.fixture
def market(anvil: Anvil) -> Market:
    return Market(anvil)


@pytest.fixture
def indexer(
    anvil: Anvil, market: Market, migrated_url: str, redis_url: str, tmp_path: Path
) -> Iterator[Indexer]:
    (tmp_path / "token.json").write_text(json.dumps({"abi": artifacts()["TestToken"]["abi"]}))
    (tmp_path / "contracts.toml").write_text(
        f'[[contract]]\nname = "TokenA"\naddress = "{market.a}"\nabi = "token.json"\n\n'
        f'[[contract]]\nname = "Pair"\nevents = ["{SWAP}", "{SYNC}"]\n'
        f'factory = {{ address = "{market.factory}", event = "{PAIR_CREATED}", '
        'parameter = "pair" }\n'
    )
    built = build_indexer(
        anvil.url,
        migrated_url,
        redis_url,
        contracts_file=load_contracts(str(tmp_path / "contracts.toml")),
    )
    yield built
    close_indexer(built)


def stored(indexer: Indexer, **where: Any) -> list[dict[str, Any]]:
    e = m.contract_events.c
    query = sa.select(m.contract_events).order_by(e.block_number, e.log_index)
    for column, value in where.items():
        query = query.where(e[column] == value)
    with indexer.store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def test_a_listed_tokens_transfers_and_every_pair_of_the_factory(
    anvil: Anvil, market: Market, indexer: Indexer
) -> None:
    sender = market.c.sender
    pair, calls = market.create_and_fund(market.a, market.b)
    created = market.block(calls)  # created and used in one block
    swapped = market.block(market.swap(pair))
    indexer.index(1, anvil.head(), "backfill")

    transfers = stored(indexer, contract="TokenA")
    # the supply minted at deployment, then the transfer into the pair, then the swap's
    assert [(t["args"]["from"], t["args"]["to"]) for t in transfers] == [
        ("0x" + "00" * 20, sender),
        (sender, pair),
        *([(sender, pair)] if market.tokens_of(pair)[0] == market.a else []),
        *([(pair, sender)] if market.tokens_of(pair)[1] == market.a else []),
    ]
    first = transfers[1]
    assert first["args"]["value"] == str(10**21) and first["event"] == "Transfer"
    assert (first["indexed_1"], first["indexed_2"], first["indexed_3"]) == (sender, pair, None)
    assert first["signature"] == "Transfer(address,address,uint256)"
    block = anvil.block(created)
    assert (first["block_number"], first["block_hash"]) == (created, block["hash"])
    assert first["block_timestamp"] == int(block["timestamp"], 16)
    assert first["address"] == market.a

    events = stored(indexer, contract="Pair")
    assert [(e["event"], e["block_number"]) for e in events] == [
        ("Sync", created),  # the mint, in the pair's creation block
        ("Sync", swapped),
        ("Swap", swapped),
    ]
    reserve0, reserve1 = protocols.V2Pair(market.c, pair, *market.tokens_of(pair)).reserves()
    assert events[1]["args"] == {"reserve0": str(reserve0), "reserve1": str(reserve1)}
    assert events[2]["args"]["sender"] == sender and events[2]["indexed_2"] == sender
    with indexer.store.engine.connect() as conn:
        children = conn.execute(sa.select(m.contract_children)).mappings().all()
    assert [(c["contract"], c["address"], c["block_number"]) for c in children] == [
        ("Pair", pair, created)
    ]


def test_a_pair_whose_later_blocks_were_committed_first_gets_their_events(
    anvil: Anvil, market: Market, indexer: Indexer
) -> None:
    indexer.index(1, market.after_setup, "backfill")
    pair, calls = market.create_and_fund(market.b, market.c3)
    created = market.block(calls)
    swapped = market.block(market.swap(pair))
    indexer.index(swapped, swapped, "backfill")  # a worker commits the later block first
    assert stored(indexer, contract="Pair") == []  # not a child yet
    indexer.index(created, created, "backfill")
    assert [(e["event"], e["block_number"]) for e in stored(indexer, contract="Pair")] == [
        ("Sync", created),
        ("Sync", swapped),
        ("Swap", swapped),
    ]


def test_a_reorg_takes_the_events_and_the_children_with_it(
    anvil: Anvil, market: Market, indexer: Indexer
) -> None:
    indexer.index(1, market.after_setup, "backfill")
    pair, calls = market.create_and_fund(market.a, market.c3)
    created = market.block(calls)
    indexer.index(created, created, "head")
    assert len(stored(indexer, contract="Pair")) == 1
    anvil.call("anvil_reorg", 1, [])  # the creation block replaced by an empty one
    market.block([])
    indexer.index(created, anvil.head(), "head")
    assert stored(indexer, contract="Pair") == []
    assert [t["block_number"] for t in stored(indexer, contract="TokenA")] == [
        n for n in range(1, created) if stored(indexer, contract="TokenA", block_number=n)
    ]
    with indexer.store.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(m.contract_children)).scalar() == 0
        )


def test_a_filter_on_an_indexed_argument_is_an_index_lookup(indexer: Indexer) -> None:
    """At 50,000 rows a scan would show; the plan must use the argument's index."""
    store = indexer.store
    store.bind_chain(31337)
    rows = [
        {
            "chain_id": 31337, "block_number": n // 10, "log_index": n % 10,
            "block_hash": "0x" + f"{n // 10:064x}", "block_timestamp": n,
            "transaction_hash": "0x" + f"{n:064x}", "address": "0x" + "11" * 20,
            "contract": "TokenA", "event": "Transfer",
            "signature": "Transfer(address,address,uint256)",
            "args": {"from": "0x" + f"{n % 997:040x}", "to": "0x" + f"{n:040x}", "value": "1"},
            "indexed_1": "0x" + f"{n % 997:040x}", "indexed_2": "0x" + f"{n:040x}",
            "indexed_3": None,
        }
        for n in range(50_000)
    ]  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(m.contract_events.insert(), rows)
    sql = (
        "SELECT block_number, log_index, args FROM contract_events WHERE chain_id = 31337 "
        "AND contract = 'TokenA' AND event = 'Transfer' AND indexed_2 = "
        f"'0x{12345:040x}'"
    )
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn.execute(sa.text("ANALYZE contract_events"))
            plan = "\n".join(r[0] for r in conn.execute(sa.text("EXPLAIN " + sql)))
            assert "ix_contract_events_indexed_2" in plan and "Seq Scan" not in plan, plan
        else:
            plan = "\n".join(str(r[-1]) for r in conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))
            assert "USING INDEX ix_contract_events_indexed_2" in plan, plan
        [(number, index, args)] = conn.execute(sa.text(sql)).all()
    assert (number, index) == (1234, 5)
    assert (json.loads(args) if isinstance(args, str) else args)["to"] == f"0x{12345:040x}"


def test_a_factory_history_decoded_in_pieces_in_any_order_and_twice(
    anvil: Anvil, market: Market, migrated_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Re-decoding (indexer.event_sync): the pair is created in the first piece and
    swapped in the second; the pieces run second first, then again, each row once."""
    from indexer.event_sync import decode_range, plan

    pair, calls = market.create_and_fund(market.a, market.b)
    created = market.block(calls)
    swapped = market.block(market.swap(pair))
    plain = build_indexer(anvil.url, migrated_url, redis_url)  # no contracts file: logs only
    try:
        plain.index(1, anvil.head(), "backfill")
    finally:
        close_indexer(plain)
    (tmp_path / "contracts.toml").write_text(
        f'[[contract]]\nname = "Pair"\nevents = ["{SWAP}", "{SYNC}"]\n'
        f'factory = {{ address = "{market.factory}", event = "{PAIR_CREATED}", '
        'parameter = "pair" }\n'
    )
    contracts = load_contracts(str(tmp_path / "contracts.toml")).contracts
    store = Store(migrated_url, chain_id=31337)
    try:
        plan(store, contracts)
        for lo, hi in [(created + 1, swapped), (1, created), (1, created), (created + 1, swapped)]:
            decode_range(store, contracts, lo, hi)
        e = m.contract_events.c
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(e.event, e.block_number).order_by(e.block_number, e.log_index)
            ).all()
    finally:
        store.dispose()
    assert [tuple(r) for r in rows] == [("Sync", created), ("Sync", swapped), ("Swap", swapped)]
