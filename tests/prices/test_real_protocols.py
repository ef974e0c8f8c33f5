"""Prices on the real Uniswap V2, Uniswap V3 and Chainlink bytecode, end to end (worker
and follower over anvil), on SQLite and PostgreSQL, checked independently: every stored
price equals the Uniswap SDK's exact fraction (@uniswap/sdk-core's Price, run in Node)
and the value computed here from getReserves()/slot0()/latestRoundData() read at the
same block, rounded once to 40 digits; through a reorg too.

WBTC has 8 decimals, USDC 6 and WETH 18; USDC is token0 of one pool and token1 of the
other; the V3 pool runs to MIN_SQRT_RATIO and MAX_SQRT_RATIO, and a V2 pair holds
reserves of 1 : 2^112-1. The sources file gives no decimals and no token order."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from chainpulse import protocols as p
from chainpulse.contracts import Contracts
from chainpulse.devnet import RedisServer, wait_until
from indexer.exact import round_exact
from tests.harness.environment import ROOT
from tests.harness.stack import FOLLOWING
from tests.harness.stack import stack as make_stack
from tests.prices.conftest import stored

WAIT = 60


class Sdk:
    """tests/prices/sdk_prices.js, one request per line."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["node", str(ROOT / "tests/prices/sdk_prices.js")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def price(self, **request: Any) -> Fraction:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        return Fraction(int(answer["numerator"]), int(answer["denominator"]))

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()


def usdc_between(c: Contracts, low: str, high: str) -> str:
    """A USDC whose address lies between the other two tokens', so that it is token1 of
    a pool with one and token0 of a pool with the other."""
    lo, hi = sorted([low, high], key=lambda a: int(a, 16))
    for _ in range(30):
        usdc = p.token(c, "USDC", 6)
        if int(lo, 16) < int(usdc, 16) < int(hi, 16):
            return usdc
    raise AssertionError("no USDC address fell between the two tokens in 30 tries")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_prices_equal_the_sdk_and_the_chain(
    database: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    with make_stack(database, tmp_path, redis_server, **FOLLOWING) as s:
        c = Contracts(s.anvil)
        weth, wbtc = p.token(c, "WETH", 18), p.token(c, "WBTC", 8)
        usdc = usdc_between(c, weth, wbtc)
        decimals = {weth: 18, wbtc: 8, usdc: 6}
        v2 = c.deploy("UniswapV2Factory", c.sender)
        pair = p.V2Pair.create(c, v2, weth, 1_000 * 10**18, usdc, 3_000_000 * 10**6)
        low, high = p.ordered(wbtc, weth)  # reserves 1 : 2^112-1
        wide = p.V2Pair.create(c, v2, low, 1, high, 2**112 - 1)
        v3 = c.deploy("UniswapV3Factory")
        callee = p.callee(c, (wbtc, 10**36), (usdc, 10**34))
        wbtc_first = p.ordered(wbtc, usdc)[0] == wbtc
        # WBTC at 60,000 USDC
        start = p.sqrt_price_x96(60_000, 8, 6) if wbtc_first else p.sqrt_price_x96(1 / 60_000, 6, 8)
        pool = p.V3Pool.create(c, v3, callee, wbtc, usdc, start, 10**12)
        feed = p.Feed.create(c, 8, "ETH / USD", 3_000 * 10**8)
        assert (pair.token0 == usdc) != (pool.token0 == usdc)  # token0 of one, token1 of other
        s.use_price_sources([
            {"name": "weth-usdc", "kind": "uniswap_v2", "token": "WETH", "quote": "USDC",
             "address": pair.address},
            {"name": "wide", "kind": "uniswap_v2", "token": "LOW", "quote": "HIGH",
             "address": wide.address, "price_of": low},
            {"name": "wbtc-usdc", "kind": "uniswap_v3", "token": "WBTC", "quote": "USDC",
             "address": pool.address},
            {"name": "eth-usd", "kind": "chainlink", "token": "ETH", "quote": "USD",
             "address": feed.proxy},
        ])  # fmt: skip
        s.start_worker(wait=False)
        s.follower()
        sdk = Sdk()
        try:

            def expected(token: str, block: int) -> str:
                """The price at `block`, from the chain read there, twice over."""
                if token == "ETH":
                    answer = c.read(feed.proxy, "latestRoundData", block=block)[1]
                    return round_exact(Fraction(answer, 10**8))
                if token == "WBTC":
                    (sqrt, *_), which = c.read(pool.address, "slot0", block=block), pool
                    raw: Any = str(sqrt)
                    kind = "v3"
                else:
                    which = pair if token == "WETH" else wide
                    r0, r1, _ = c.read(which.address, "getReserves", block=block)
                    raw, kind = [str(r0), str(r1)], "v2"
                priced_address = {"WETH": weth, "WBTC": wbtc, "LOW": low}[token]
                priced = "token0" if which.token0 == priced_address else "token1"
                d0, d1 = decimals[which.token0], decimals[which.token1]
                by_sdk = sdk.price(kind=kind, token0=which.token0, token1=which.token1,
                                   decimals0=d0, decimals1=d1, priced=priced, raw=raw)  # fmt: skip
                if kind == "v2":
                    here = Fraction(int(raw[1]) * 10**d0, int(raw[0]) * 10**d1)
                else:
                    here = Fraction(sqrt * sqrt * 10**d0, 2**192 * 10**d1)
                here = here if priced == "token0" else 1 / here
                assert by_sdk == here, (token, block)
                return round_exact(here)

            def check(token: str) -> None:
                """The latest stored price of `token` is the chain's at its block."""
                head = s.anvil.head()
                s.wait_consistent(WAIT)
                wait_until(lambda: stored(s, token) and stored(s, token)[-1][0] <= head, WAIT,
                           f"{token} priced")  # fmt: skip
                block, price = stored(s, token)[-1]
                assert price == expected(token, block), token

            wait_until(lambda: s.start_block() is not None, WAIT, "the follower starting")
            pair.swap(10**18, zero_for_one=pair.token0 == weth)
            check("WETH")
            c.call(wide.address, "sync")  # Sync(1, 2^112-1) again, now indexed
            check("LOW")
            pool.swap_to(pool.sqrt_price() * 10_007 // 10_000)
            check("WBTC")
            pool.swap_to(p.MIN_SQRT_RATIO + 1)
            check("WBTC")
            pool.swap_to(p.MAX_SQRT_RATIO - 1)
            check("WBTC")
            feed.answer(3_123_45678901)
            check("ETH")

            # a reorg from the swap's block on removes its price: the one before comes back
            # (from the swap's block, not a fixed depth: the head may have moved past it)
            before = stored(s, "WETH")[-1]
            block = int(pair.swap(5 * 10**18, zero_for_one=pair.token0 == weth)["blockNumber"], 16)
            wait_until(lambda: stored(s, "WETH")[-1][0] == block, WAIT, "the swap priced")
            s.anvil.call("anvil_reorg", s.anvil.head() - block + 1, [])
            s.wait_consistent(WAIT)
            wait_until(lambda: stored(s, "WETH")[-1] == before, WAIT, "the price restored")
            assert before[1] == expected("WETH", s.anvil.head())
        finally:
            sdk.close()
