"""The dev chain's market: the test pair, pool and feed and an ERC-20 on anvil, the price
sources file for them, and trades that move their prices.

`chainpulse dev` deploys it once per chain (its addresses are kept in
`.dev/market.json` beside anvil's state) and calls `moves` every second, so prices
change because the chain changed.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chainpulse.contracts import Contracts
from chainpulse.devnet import Anvil

Q96 = 2**96
WETH = 10**18
USDC = 10**6


@dataclass(frozen=True)
class Market:
    pair: str  # WETH/USDC, V2: token0 WETH (18 decimals), token1 USDC (6)
    pool: str  # UNI/WETH, V3: token0 UNI (18), token1 WETH (18)
    feed: str  # ETH/USD, Chainlink-style, 8 decimals
    token: str  # an ERC-20 (18 decimals) whose transfers fill the blocks

    @classmethod
    def deploy(cls, anvil: Anvil) -> Market:
        """Deploy and initialise everything: WETH at 3,000 USDC, UNI at 0.003 WETH,
        ETH at 3,000 USD."""
        c = Contracts(anvil)
        pair = c.deploy("TestPair", 1_000 * WETH, 3_000_000 * USDC)
        pool = c.deploy("TestPool")
        c.call(pool, "initialize", math.isqrt(3 * 2**192 // 1000))
        feed = c.deploy("TestFeed")
        c.call(feed, "submit", 3_000 * 10**8)
        token = c.deploy("TestToken", "Dev Token", "DEV", 18, 10**9 * WETH)
        return cls(pair, pool, feed, token)

    @classmethod
    def load_or_deploy(cls, anvil: Anvil, path: Path) -> tuple[Market, bool]:
        """The market recorded at `path` when its contracts are still on the chain, else a
        new one (recorded there); and whether it was deployed now."""
        if path.exists():
            try:
                market = cls(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                market = None
            if market is not None and all(
                anvil.call("eth_getCode", address, "latest") not in ("0x", "")
                for address in asdict(market).values()
            ):
                return market, False
        market = cls.deploy(anvil)
        path.write_text(json.dumps(asdict(market), indent=1) + "\n")
        return market, True

    def sources(self) -> str:
        """The price sources file for this market (TOML)."""
        return f"""# Written by `chainpulse dev` for the contracts it deployed on its anvil.

[[source]]
name = "weth-usdc-v2"
kind = "uniswap_v2"
token = "WETH"
quote = "USDC"
address = "{self.pair}"
base = "token0"
decimals0 = 18
decimals1 = 6
min_liquidity = 1000

[[source]]
name = "uni-weth-v3"
kind = "uniswap_v3"
token = "UNI"
quote = "WETH"
address = "{self.pool}"
base = "token0"
decimals0 = 18
decimals1 = 18

[[source]]
name = "eth-usd-feed"
kind = "chainlink"
token = "ETH"
quote = "USD"
address = "{self.feed}"
decimals = 8

[[source]]
name = "uni-usd"
kind = "derived"
token = "UNI-USD"
quote = "USD"
legs = ["UNI", "ETH"]
"""


class Trader:
    """Random but plausible moves on a market, as `eth_sendTransaction` calls."""

    def __init__(self, anvil: Anvil, market: Market, rng: random.Random | None = None) -> None:
        self.anvil = anvil
        self.market = market
        self.rng = rng or random.Random()
        self.contracts = Contracts(anvil)
        self.contracts.kinds.update(
            {
                market.pair: "TestPair",
                market.pool: "TestPool",
                market.feed: "TestFeed",
                market.token: "TestToken",
            }
        )
        self.accounts = anvil.accounts()

    def moves(self) -> list[tuple[str, Sequence[Any]]]:
        """This second's trades: ERC-20 transfers, and now and then a swap on the pair,
        one on the pool and a new feed answer."""
        rng, c, m = self.rng, self.contracts, self.market
        txs = [
            c.transaction(
                m.token, "transfer", rng.choice(self.accounts[1:]), rng.randint(1, 10**21)
            )
            for _ in range(rng.randint(1, 4))
        ]
        if rng.random() < 0.7:
            amount = rng.randint(WETH // 10, 5 * WETH)
            if rng.random() < 0.5:
                txs.append(c.transaction(m.pair, "swap", amount, True))
            else:
                txs.append(c.transaction(m.pair, "swap", amount * 3_000 * USDC // WETH, False))
        if rng.random() < 0.6:
            current = int(
                self.anvil.call("eth_call", c.transaction(m.pool, "sqrtPriceX96"), "latest"), 16
            )
            step = rng.randint(-40, 40)  # basis points of sqrtPrice: about twice that in price
            txs.append(
                c.transaction(m.pool, "swap", current * (10_000 + step) // 10_000, step, -step)
            )
        if rng.random() < 0.4:
            answer = _signed(
                int(
                    self.anvil.call("eth_call", c.transaction(m.feed, "latestAnswer"), "latest"), 16
                )
            )
            txs.append(
                c.transaction(m.feed, "submit", answer * (10_000 + rng.randint(-25, 25)) // 10_000)
            )
        return [("eth_sendTransaction", [tx]) for tx in txs]


def _signed(word: int) -> int:
    return word - 2**256 if word >= 2**255 else word
