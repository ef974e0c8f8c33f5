"""End to end, real worker, follower, server and the JavaScript socket.io-client: a
`Sync`, a `Swap` and an `AnswerUpdated` mined on anvil reach the subscribed rooms as
`price-update`s whose `priceExact` is the value computed here with Fraction; a derived
price follows its legs; several updates in one block are all stored and pushed once; a
reorg that removes an update brings the previous price back, after the `reorg`."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from chainpulse.devnet import wait_until
from indexer import models as m
from indexer.exact import round_exact
from tests.harness.jsclient import JsClient
from tests.harness.realtime import Server
from tests.prices.conftest import DeployedMarket

TOKENS = ["WETH", "DAI", "UNI", "ETH", "UNI-USD"]
WAIT = 30


@pytest.fixture
def server(market: DeployedMarket) -> Iterator[Server]:
    settings = market.stack.settings
    server = Server(settings.redis_url, settings.database_url)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def update_of(client: JsClient, token: str, exact: str) -> dict[str, Any]:
    return client.wait(
        lambda e, d: e == "price-update" and d["token"] == token and d["priceExact"] == exact,
        WAIT,
        f"price-update {token} = {exact}",
    )


def rows(market: DeployedMarket, token: str) -> list[tuple[int, int, Decimal]]:
    with market.stack.store.engine.connect() as conn:
        found = conn.execute(
            sa.select(m.prices.c.block_number, m.prices.c.log_index, m.prices.c.price)
            .where(m.prices.c.token == token)
            .order_by(m.prices.c.block_number, m.prices.c.log_index)
        )
        return [(int(b), int(i), Decimal(p)) for b, i, p in found]


def v2(r0: int, r1: int, d0: int, d1: int) -> Fraction:
    """token0 in token1, computed independently of chainpulse."""
    return Fraction(r1, 10**d1) / Fraction(r0, 10**d0)


def test_chain_prices_reach_their_rooms_exactly(
    market: DeployedMarket, server: Server, tmp_path: Any
) -> None:
    s, c = market.stack, market.contracts
    s.follower()
    wait_until(lambda: s.start_block() is not None, WAIT, "the follower starting")
    client = JsClient(server.url, TOKENS, tmp_path)
    try:
        client.wait(lambda e, d: e == "ack" and d["channel"] == "price:UNI-USD", WAIT, "acks")

        # Sync, 18/6 decimals, a price with no finite decimal expansion
        r0, r1 = 3 * 10**18, 10_000 * 10**6 + 1
        c.call(market.pair, "sync", r0, r1)
        weth = update_of(client, "WETH", round_exact(v2(r0, r1, 18, 6)))
        assert weth["priceExact"] == "3333.333333666666666666666666666666666667"
        assert weth["quote"] == "USDC" and weth["source"] == "weth-usdc"
        assert weth["price"] == pytest.approx(3333.333333666667)

        # Sync, 6/18 decimals with base token1 (inverted), a uint112 maximum reserve
        r0, r1 = 2**112 - 1, 7 * 10**18 + 3
        c.call(market.pair2, "sync", r0, r1)
        update_of(client, "DAI", round_exact(1 / v2(r0, r1, 6, 18)))

        # Initialize, then a negative Chainlink answer; the derived price follows both
        c.call(market.pool, "initialize", 2 * 2**96)
        update_of(client, "UNI", "4")
        c.call(market.feed, "submit", -1_234_567_890_123)
        eth = update_of(client, "ETH", "-12345.67890123")
        assert eth["quote"] == "USD" and isinstance(eth["updatedAt"], int)
        update_of(client, "UNI-USD", round_exact(Fraction(4) * Fraction("-12345.67890123")))

        # Swap with sqrtPriceX96 near 2^160: the derived price follows the other leg
        sqrt = 2**160 - 12_345
        c.call(market.pool, "swap", sqrt, -(10**18), 3 * 10**18)
        uni = round_exact(Fraction(sqrt * sqrt, 2**192))
        update_of(client, "UNI", uni)
        update_of(
            client, "UNI-USD", round_exact(Fraction(Decimal(uni)) * Fraction("-12345.67890123"))
        )
        c.call(market.feed, "submit", 2000 * 10**8 + 1)
        update_of(client, "ETH", "2000.00000001")
        both = round_exact(Fraction(Decimal(uni)) * Fraction("2000.00000001"))
        update_of(client, "UNI-USD", both)

        # Several updates of one token in one block: every one stored, the last pushed once
        reserves = [(10**18, 1500 * 10**6), (10**18, 1600 * 10**6), (2 * 10**18, 3400 * 10**6)]
        receipt = c.call(market.pair, "syncs", [a for a, _ in reserves], [b for _, b in reserves])
        block = int(receipt["blockNumber"], 16)
        last = round_exact(v2(*reserves[-1], 18, 6))
        update_of(client, "WETH", last)
        wait_until(
            lambda: len([r for r in rows(market, "WETH") if r[0] == block]) == 3, WAIT, "rows"
        )
        stored = [r for r in rows(market, "WETH") if r[0] == block]
        assert [format(p, "f") for _, _, p in stored] == [
            round_exact(v2(*r, 18, 6)) for r in reserves
        ]
        s.anvil.mine()  # a block without updates, then look again: still one push
        s.wait_consistent()
        pushed = [
            d
            for d in client.of("price-update")
            if d["token"] == "WETH" and d["blockNumber"] == block
        ]
        assert [d["priceExact"] for d in pushed] == [last]

        # A reorg removes an update: the previous price comes back, after the reorg
        c.call(market.pair, "sync", 10**18, 9 * 10**6)
        update_of(client, "WETH", "9")
        s.anvil.call("anvil_reorg", 1, [])
        s.wait_consistent()
        restored = client.wait_after(
            "reorg",
            lambda e, d: e == "price-update" and d["token"] == "WETH" and d["priceExact"] == last,
            WAIT,
            f"price-update WETH = {last}",
        )  # (update_of would take the push of `last` from before the reorg)
        assert restored["blockNumber"] == block
        weth_pushes = [d["priceExact"] for d in client.of("price-update") if d["token"] == "WETH"]
        assert weth_pushes[-3:] == [last, "9", last]  # the update, then its restore
        assert rows(market, "WETH")[-1][2] == Decimal(last)

        # A late subscriber gets the latest price at once, as a snapshot
        late = JsClient(server.url, ["WETH", "UNI-USD"], tmp_path)
        try:
            first = late.wait(
                lambda e, d: e == "price-update" and d["token"] == "WETH", WAIT, "snapshot"
            )
            assert first["snapshot"] is True and first["priceExact"] == last
            derived = late.wait(
                lambda e, d: e == "price-update" and d["token"] == "UNI-USD", WAIT, "snapshot"
            )
            assert derived["priceExact"] == both and derived["quote"] == "USD"
        finally:
            late.close()
    finally:
        client.close()

    # History and candles from the read API
    history = requests.get(f"{server.url}/api/prices/WETH?limit=50", timeout=10).json()
    assert [h["priceExact"] for h in history] == [
        format(p, "f") for *_, p in reversed(rows(market, "WETH"))
    ]
    candles = requests.get(f"{server.url}/api/prices/WETH/candles?interval=1h", timeout=10).json()
    assert sum(k["count"] for k in candles) == len(history)
    assert max(Decimal(k["high"]) for k in candles) == max(
        Decimal(h["priceExact"]) for h in history
    )
    listed = {p["token"]: p for p in requests.get(f"{server.url}/api/prices", timeout=10).json()}
    assert listed["WETH"]["priceExact"] == last and listed["ETH"]["quote"] == "USD"


def test_backfilled_blocks_store_their_prices(market: DeployedMarket) -> None:
    s, c = market.stack, market.contracts
    first = s.anvil.head() + 1
    answers = [1999 * 10**8, -5, 2001 * 10**8 + 7]
    for value in answers:
        c.call(market.feed, "submit", value)
    c.call(market.pool, "initialize", 2**96)
    done = s.cli("backfill", str(first), str(s.anvil.head()), "--wait")
    assert done.returncode == 0, done.stderr
    stored = [format(p, "f") for *_, p in rows(market, "ETH")]
    assert stored == [round_exact(Fraction(v, 10**8)) for v in answers]
    # the derived price, from the legs as of its block: ETH's latest times UNI = 1
    assert [format(p, "f") for *_, p in rows(market, "UNI-USD")] == [stored[-1]]
