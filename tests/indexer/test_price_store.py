"""Chain prices in the store on SQLite and PostgreSQL: rows written with their block,
the latest by chain position whatever the commit order, derived prices from the legs
as of their block, history, and candles compared as exact numbers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
import sqlalchemy as sa

from indexer import models as m
from indexer import queries
from indexer.blocks import BlockData
from indexer.exact import round_exact
from indexer.price_decoding import ANSWER_UPDATED, SYNC
from indexer.sources import parse_sources
from indexer.store import Store

PAIR = "0x" + "11" * 20
FEED = "0x" + "22" * 20
SOURCES = parse_sources(
    {
        "source": [
            {"name": "pair", "kind": "uniswap_v2", "token": "WETH", "quote": "USDC",
             "address": PAIR, "base": "token0", "decimals0": 0, "decimals1": 0},
            {"name": "feed", "kind": "chainlink", "token": "ETH", "quote": "USD",
             "address": FEED, "decimals": 0},
            {"name": "both", "kind": "derived", "token": "X", "quote": "USD",
             "legs": ["WETH", "1/ETH"]},
        ]
    },
    "test.toml",
)  # fmt: skip
T0 = 1_700_000_000  # the first block's timestamp; one block per 30 s


def word(value: int) -> str:
    return f"{value % 2**256:064x}"


def sync(number: int, index: int, r0: int, r1: int) -> dict[str, Any]:
    return _log(number, index, PAIR, SYNC, "0x" + word(r0) + word(r1))


def answer(number: int, index: int, value: int) -> dict[str, Any]:
    return _log(number, index, FEED, ANSWER_UPDATED, "0x" + word(T0), "0x" + word(value))


def _log(
    number: int, index: int, address: str, topic0: str, data: str, topic1: str | None = None
) -> dict[str, Any]:
    return {
        "block_number": number, "log_index": index, "transaction_hash": "0x" + f"{number:064x}",
        "address": address, "topic0": topic0, "topic1": topic1, "topic2": None, "topic3": None,
        "data": data,
    }  # fmt: skip


def block(number: int, logs: list[dict[str, Any]]) -> BlockData:
    row = {
        "number": number, "hash": f"0x{number:064x}", "parent_hash": f"0x{number - 1:064x}",
        "timestamp": T0 + 30 * number, "tx_count": 0, "gas_used": 0, "gas_limit": 30_000_000,
        "base_fee_per_gas": None, "miner": "0x" + "ee" * 20, "indexed_at": datetime.now(UTC),
    }  # fmt: skip
    return BlockData(block=row, transactions=[], logs=logs)


@pytest.fixture
def store(migrated_url: str) -> Iterator[Store]:
    built = Store(migrated_url, sources=SOURCES, chain_id=31337)
    yield built
    built.dispose()


def read(store: Store, query: Any, *args: Any) -> Any:
    with store.engine.connect() as conn:
        return query(conn, *args)


def test_rows_and_events_of_one_block(store: Store) -> None:
    saved = store.save_blocks(
        [block(1, [sync(1, 0, 1, 10), sync(1, 3, 2, 10), answer(1, 5, 4)])], "head"
    )
    assert [(e.token, e.price, e.blockNumber) for e in saved.prices] == [
        ("WETH", "5", 1), ("ETH", "4", 1), ("X", "1.25", 1),
    ]  # fmt: skip
    assert [p.entry.type for p in saved.outbox] == ["block.indexed"] + ["price.updated"] * 3
    history = read(store, queries.price_history, "WETH", 10)
    assert [(h.price, h.log_index) for h in history] == [(Decimal(5), 3), (Decimal(10), 0)]
    # X followed WETH at log 0 (no ETH yet: no update), at log 3 (still none), and at
    # ETH's update at log 5: WETH 5 / ETH 4
    assert [(h.price, h.log_index) for h in read(store, queries.price_history, "X", 10)] == [
        (Decimal("1.25"), 5)
    ]


def test_the_latest_price_follows_the_chain_not_the_commit_order(store: Store) -> None:
    store.save_blocks([block(3, [sync(3, 0, 1, 30)])], "backfill")
    store.save_blocks([block(1, [sync(1, 0, 1, 10)])], "backfill")
    store.save_blocks([block(2, [sync(2, 0, 1, 20), answer(2, 1, 2)])], "backfill")
    latest = read(store, queries.latest_price, "WETH")
    assert (latest.price, latest.block_number) == (Decimal(30), 3)
    assert {p.token: p.price for p in read(store, queries.latest_prices)} == {
        "WETH": Decimal(30), "ETH": Decimal(2), "X": Decimal(10),
    }  # fmt: skip
    # X at block 2 used WETH as of block 2 (20, not block 3's 30, committed earlier)
    assert read(store, queries.latest_price_before, "WETH", (T0 + 60) * 1000, 2).price == 10


def test_a_batch_prices_with_the_rows_stored_between_its_blocks(store: Store) -> None:
    store.save_blocks([block(2, [sync(2, 0, 1, 20)])], "head")  # a head job, first
    # a backfill of 1 and 3 (2 is stored, so skipped): X at 3 uses block 2's WETH
    store.save_blocks(
        [block(1, [sync(1, 0, 1, 10), answer(1, 1, 2)]), block(3, [answer(3, 0, 4)])], "backfill"
    )
    assert [(h.price, h.block_number) for h in read(store, queries.price_history, "X", 10)] == [
        (Decimal(5), 3), (Decimal(5), 1),
    ]  # fmt: skip


def test_a_feed_is_judged_stale_only_when_no_block_since_its_answer_is_missing(
    migrated_url: str,
) -> None:
    aging = parse_sources(
        {"source": [{"name": "feed", "kind": "chainlink", "token": "ETH", "quote": "USD",
                     "address": FEED, "decimals": 0, "max_age": 60}]},
        "test.toml",
    )  # fmt: skip
    store = Store(migrated_url, sources=aging, chain_id=31337)
    try:
        # updatedAt T0, in block 1 (at T0 + 30); blocks are 30 s apart: from block 3
        # (T0 + 90) the answer is older than max_age
        store.save_blocks([block(1, [answer(1, 0, 7)])], "head")
        # block 5 commits before 2, 3 and 4: it cannot know that none of them answered
        store.save_blocks([block(5, [])], "head")
        assert read(store, queries.latest_price, "ETH").stale is False
        store.save_blocks([block(n, []) for n in (2, 3)], "head")  # 2 and 3 are settled
        latest = read(store, queries.latest_price, "ETH")
        assert (latest.stale, latest.stale_reason, latest.block_number) == (True, "feed-age", 3)
        assert latest.price == 7 and latest.log_index is None
        store.save_blocks([block(n, []) for n in (4, 6)], "head")  # stale already
        assert [h.block_number for h in read(store, queries.price_history, "ETH", 10)] == [3, 1]
    finally:
        store.dispose()


def test_a_reorg_restores_the_previous_price(store: Store) -> None:
    from indexer.price_store import priced_at, restore

    store.save_blocks([block(1, [sync(1, 0, 1, 10)]), block(2, [sync(2, 0, 1, 20)])], "head")
    with store.writing() as conn:
        removed = priced_at(conn, store.chain, [2])
        store.delete_heights(conn, [2])
        [event] = restore(conn, store.chain, removed, "block.reorged:1:0xaa:0xbb")
    assert (event.token, event.price, event.blockNumber) == ("WETH", "10", 1)
    assert event.reorgId == "block.reorged:1:0xaa:0xbb" and event.id != "price.updated:WETH:1:10"
    with store.writing() as conn:
        removed = priced_at(conn, store.chain, [1])
        store.delete_heights(conn, [1])
        [gone] = restore(conn, store.chain, removed, "r2")
    assert gone.price is None and gone.source == "pair"


def test_candles_compare_exact_numbers(store: Store) -> None:
    # 10 > 9 (text says otherwise), and two prices that differ at the 30th digit
    fine = 10**29
    values = [(3, 1), (1, 9), (1, 10), (1, 9 * fine + 1), (1, 9 * fine)]
    datas = [block(n, [sync(n, 0, r0, r1)]) for n, (r0, r1) in enumerate(values, start=1)]
    for data in reversed(datas):  # committed newest first
        store.save_blocks([data], "backfill")
    # blocks 30 s apart from T0 + 30 (20 s into a minute): minutes hold {1}, {2, 3}, {4, 5}
    found = read(store, queries.candles, "WETH", 60_000, 10)
    flat = [
        (c.start_ms, str(c.open), str(c.high), str(c.low), str(c.close), c.count) for c in found
    ]
    by_minute: dict[int, list[str]] = {}
    for n, (r0, r1) in enumerate(values, start=1):
        by_minute.setdefault((T0 + 30 * n) * 1000 // 60_000, []).append(
            round_exact(Fraction(r1, r0))
        )
    expected = [
        (minute * 60_000, ps[0], max(ps, key=Decimal), min(ps, key=Decimal), ps[-1], len(ps))
        for minute, ps in sorted(by_minute.items(), reverse=True)
    ]
    assert [len(ps) for ps in by_minute.values()] == [1, 2, 2]
    assert flat == expected
    assert len(read(store, queries.candles, "WETH", 60_000, 1)) == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(m.prices)).scalar_one() == 5
