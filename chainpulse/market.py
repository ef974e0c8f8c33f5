"""The dev chain's market on the real protocols: a Uniswap V2 pair (WETH/USDC) and a
Uniswap V3 pool (UNI/WETH) made by the real factories, a Chainlink FluxAggregator
(ETH/USD) behind its EACAggregatorProxy, the project's ERC-20s, the price sources file
for them, and trades that move their prices.

`chainpulse dev` deploys it once per chain (its addresses are kept in
`.dev/market.json` beside anvil's state) and calls `moves` every second, so prices
change because the chain changed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chainpulse import protocols
from chainpulse.contracts import Contracts
from chainpulse.devnet import Anvil

WETH = 10**18
USDC = 10**6
SWAP = (
    "event Swap(address indexed sender, uint256 amount0In, uint256 amount1In, "
    "uint256 amount0Out, uint256 amount1Out, address indexed to)"
)
SYNC = "event Sync(uint112 reserve0, uint112 reserve1)"


@dataclass(frozen=True)
class Market:
    pair: str  # WETH/USDC, Uniswap V2
    pool: str  # UNI/WETH, Uniswap V3, full-range liquidity
    aggregator: str  # ETH/USD, FluxAggregator, 8 decimals, answered by the first account
    proxy: str  # its EACAggregatorProxy
    callee: str  # the V3Callee that pays the pool (holds UNI and WETH)
    weth: str
    usdc: str
    uni: str
    token: str  # DEV, an ERC-20 (18 decimals) whose transfers fill the blocks

    @classmethod
    def deploy(cls, anvil: Anvil) -> Market:
        """Deploy and initialise everything: WETH at 3,000 USDC, UNI at 0.003 WETH,
        ETH at 3,000 USD."""
        c = Contracts(anvil)
        weth = protocols.token(c, "WETH", 18)
        usdc = protocols.token(c, "USDC", 6)
        uni = protocols.token(c, "UNI", 18)
        v2 = c.deploy("UniswapV2Factory", c.sender)
        pair = protocols.V2Pair.create(c, v2, weth, 1_000 * WETH, usdc, 3_000_000 * USDC)
        callee = protocols.callee(c, (uni, 10**40), (weth, 10**40))
        v3 = c.deploy("UniswapV3Factory")
        uni_first = protocols.ordered(uni, weth)[0] == uni
        price = 0.003 if uni_first else 1 / 0.003  # token1 per token0
        pool = protocols.V3Pool.create(
            c, v3, callee, uni, weth, protocols.sqrt_price_x96(price), 10**24
        )
        feed = protocols.Feed.create(c, 8, "ETH / USD", 3_000 * 10**8)
        token = c.deploy("TestToken", "Dev Token", "DEV", 18, 10**9 * WETH)
        return cls(
            pair.address, pool.address, feed.aggregator, feed.proxy, callee, weth, usdc, uni, token
        )

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

    def sources(self, tag: str = "") -> str:
        """The price sources file for this market (TOML): no decimals and no token
        order, chainpulse reads them from the chain. `tag` follows every token and
        source name (price tokens are unique across a deployment: a second chain's
        market prices `WETH.2`)."""
        priced = (
            ("", "")
            if not tag
            else (
                'price_of = "WETH"        # the pair\'s token priced, by its symbol\n',
                'price_of = "UNI"\n',
            )
        )
        return f"""# Written by `chainpulse dev` for the contracts it deployed on its anvil.

[[source]]
name = "weth-usdc-v2{tag}"
kind = "uniswap_v2"
token = "WETH{tag}"            # the token priced: the pair's token of this symbol
{priced[0]}quote = "USDC"
address = "{self.pair}"
min_liquidity = 1000

[[source]]
name = "uni-weth-v3{tag}"
kind = "uniswap_v3"
token = "UNI{tag}"
{priced[1]}quote = "WETH"
address = "{self.pool}"

[[source]]
name = "eth-usd-feed{tag}"
kind = "chainlink"
token = "ETH{tag}"
quote = "USD"
address = "{self.proxy}"  # the address a feed is published under

[[source]]
name = "uni-usd{tag}"
kind = "derived"
token = "UNI-USD{tag}"
quote = "USD"
legs = ["UNI{tag}", "ETH{tag}"]
"""

    def contracts(self, suffix: str = "", chain: str | None = None) -> str:
        """Contracts file entries for this market's decoded events (docs/contracts.md):
        the DEV token's transfers (from its ABI) and the pair's swaps and syncs (from
        their signatures). `suffix` follows each name (a second chain's: `DEV-2`);
        `chain` names its chain in a chains file."""
        where = f'chain = "{chain}"\n' if chain else ""
        return f"""[[contract]]
name = "DEV{suffix}"
{where}address = "{self.token}"
abi = "abis/TestToken.json"
events = ["Transfer"]

[[contract]]
name = "Pair{suffix}"
{where}address = "{self.pair}"
events = ["{SWAP}", "{SYNC}"]
"""


class Trader:
    """Random but plausible moves on a market, as `eth_sendTransaction` calls."""

    def __init__(self, anvil: Anvil, market: Market, rng: random.Random | None = None) -> None:
        self.anvil = anvil
        self.market = market
        self.rng = rng or random.Random()
        c = self.contracts = Contracts(anvil)
        for address, name in [
            (market.weth, "TestToken"),
            (market.usdc, "TestToken"),
            (market.uni, "TestToken"),
            (market.token, "TestToken"),
            (market.pair, "UniswapV2Pair"),
            (market.pool, "UniswapV3Pool"),
            (market.aggregator, "FluxAggregator"),
            (market.proxy, "EACAggregatorProxy"),
            (market.callee, "V3Callee"),
        ]:
            c.at(address, name)
        self.pair = protocols.V2Pair(c, market.pair, *protocols.ordered(market.weth, market.usdc))
        self.pool = protocols.V3Pool(
            c, market.pool, *protocols.ordered(market.uni, market.weth), market.callee
        )
        self.feed = protocols.Feed(c, market.aggregator, market.proxy, 8)
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
            weth_in = rng.random() < 0.5
            amount = rng.randint(WETH // 10, 5 * WETH)
            if not weth_in:
                amount = amount * 3_000 * USDC // WETH
            zero_for_one = (self.pair.token0 == m.weth) == weth_in
            txs += self.pair.swap_calls(amount, zero_for_one)
        if rng.random() < 0.6:
            step = rng.randint(-40, 40)  # basis points of sqrtPrice: about twice that in price
            txs.append(self.pool.swap_call(self.pool.sqrt_price() * (10_000 + step) // 10_000))
        if rng.random() < 0.4:
            answer, _ = self.feed.latest()
            txs.append(self.feed.answer_call(answer * (10_000 + rng.randint(-25, 25)) // 10_000))
        return [("eth_sendTransaction", [tx]) for tx in txs]
