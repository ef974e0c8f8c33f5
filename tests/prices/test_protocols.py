"""The real Uniswap V2, V3 and Chainlink bytecode on anvil, driven by chainpulse.protocols:
pools made by the real factories trade, and a feed answers behind its proxy and follows
the proxy to a new aggregator."""

from __future__ import annotations

from chainpulse import protocols as p
from chainpulse.contracts import Contracts
from chainpulse.devnet import Anvil


def test_the_real_contracts_trade_and_answer() -> None:
    with Anvil() as anvil:
        c = Contracts(anvil)
        usdc, weth, wbtc = p.token(c, "USDC", 6), p.token(c, "WETH", 18), p.token(c, "WBTC", 8)
        assert c.read(usdc, "decimals") == 6 and c.read(wbtc, "symbol") == "WBTC"

        factory = c.deploy("UniswapV2Factory", c.sender)
        pair = p.V2Pair.create(c, factory, weth, 1_000 * 10**18, usdc, 3_000_000 * 10**6)
        assert sorted(pair.reserves()) == sorted([1_000 * 10**18, 3_000_000 * 10**6])
        before = pair.reserves()
        pair.swap(10**18, zero_for_one=pair.token0 == weth)
        weth_reserve = pair.reserves()[0 if pair.token0 == weth else 1]
        assert weth_reserve == 1_001 * 10**18 and pair.reserves() != before

        v3 = c.deploy("UniswapV3Factory")
        callee = p.callee(c, (wbtc, 10**36), (usdc, 10**34))
        start = p.sqrt_price_x96(1)
        pool = p.V3Pool.create(c, v3, callee, wbtc, usdc, start, 10**12)
        assert pool.sqrt_price() == start
        pool.swap_to(start * 101 // 100)
        assert pool.sqrt_price() == start * 101 // 100
        pool.swap_to(p.MIN_SQRT_RATIO + 1)  # past the position: the price runs to the limit
        assert pool.sqrt_price() == p.MIN_SQRT_RATIO + 1

        feed = p.Feed.create(c, 8, "ETH / USD", 3_000 * 10**8)
        assert feed.latest()[0] == 3_000 * 10**8
        assert c.read(feed.proxy, "aggregator").lower() == feed.aggregator
        moved = p.aggregator_for(c, 8, "ETH / USD")
        feed.move_to(moved)
        feed.answer(-7, moved)
        assert feed.latest()[0] == -7
