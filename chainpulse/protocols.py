"""The real Uniswap V2, Uniswap V3 and Chainlink contracts on anvil: deploy a pair, a
pool or a feed over the project's ERC-20s, and trade or answer on them.

The dev chain's market and the price tests build on these; every price they make is one
the real bytecode computed (see `chainpulse.contracts` for where each artifact comes
from).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chainpulse.contracts import Contracts

MIN_TICK = -887272  # TickMath.MIN_TICK
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739  # TickMath: the pool's price limits, exclusive
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342
FEE = 3000  # the 0.3% tier: tick spacing 60
SPACING = 60
FULL_RANGE = (MIN_TICK // SPACING * SPACING + SPACING, MAX_TICK // SPACING * SPACING)


def token(c: Contracts, symbol: str, decimals: int, supply: int | None = None) -> str:
    """A TestToken with `decimals`; the whole supply (default 10^30 units of the token,
    whatever its decimals) goes to the sender."""
    amount = supply if supply is not None else 10**30 * 10**decimals
    return c.deploy("TestToken", f"Test {symbol}", symbol, decimals, amount)


def ordered(a: str, b: str) -> tuple[str, str]:
    """The two tokens as a Uniswap pool orders them (token0 has the lower address)."""
    return (a, b) if int(a, 16) < int(b, 16) else (b, a)


@dataclass(frozen=True)
class V2Pair:
    """A real UniswapV2Pair made by the real factory."""

    contracts: Contracts
    address: str
    token0: str
    token1: str

    @classmethod
    def create(
        cls, c: Contracts, factory: str, a: str, amount_a: int, b: str, amount_b: int
    ) -> V2Pair:
        """The pair of tokens `a` and `b` with reserves `amount_a` and `amount_b` (in
        their smallest units), its liquidity minted to the sender."""
        c.call(factory, "createPair", a, b, gas=6_000_000)
        pair = V2Pair(c, c.at(c.read(factory, "getPair", a, b), "UniswapV2Pair"), *ordered(a, b))
        pair.add(
            amount_a if pair.token0 == a else amount_b, amount_b if pair.token0 == a else amount_a
        )
        return pair

    def add(self, amount0: int, amount1: int) -> None:
        """Deposit both amounts and mint the liquidity to the sender (`Sync`)."""
        c = self.contracts
        c.call(self.token0, "transfer", self.address, amount0)
        c.call(self.token1, "transfer", self.address, amount1)
        c.call(self.address, "mint", c.sender)

    def reserves(self) -> tuple[int, int]:
        reserve0, reserve1, _ = self.contracts.read(self.address, "getReserves")
        return reserve0, reserve1

    def swap_calls(self, amount_in: int, zero_for_one: bool) -> list[dict[str, str]]:
        """The two transactions of a swap of `amount_in` (of token0 when `zero_for_one`):
        pay the pair, then take out what the constant product with its 0.3% fee allows."""
        c = self.contracts
        reserve0, reserve1 = self.reserves()
        reserve_in, reserve_out = (reserve0, reserve1) if zero_for_one else (reserve1, reserve0)
        with_fee = amount_in * 997
        # 1% under what the reserves allow: a swap still pending may move them first
        out = with_fee * reserve_out // (reserve_in * 1000 + with_fee) * 99 // 100
        return [
            c.transaction(
                self.token0 if zero_for_one else self.token1, "transfer", self.address, amount_in
            ),
            c.transaction(
                self.address,
                "swap",
                0 if zero_for_one else out,
                out if zero_for_one else 0,
                c.sender,
                b"",
            ),
        ]

    def swap(self, amount_in: int, zero_for_one: bool) -> dict[str, Any]:
        """Swap, waiting for both transactions; the receipt of the swap itself."""
        pay, swap = self.swap_calls(amount_in, zero_for_one)
        self.contracts.execute(pay)
        return self.contracts.execute(swap)

    def drain(self, share: float = 0.999) -> None:
        """Burn `share` of the sender's liquidity: the reserves fall by that much."""
        c = self.contracts
        liquidity = c.read(self.address, "balanceOf", c.sender)
        c.call(self.address, "transfer", self.address, int(liquidity * share))
        c.call(self.address, "burn", c.sender)


@dataclass(frozen=True)
class V3Pool:
    """A real UniswapV3Pool (0.3% tier) made by the real factory, with full-range
    liquidity minted through `callee` (a V3Callee that holds both tokens)."""

    contracts: Contracts
    address: str
    token0: str
    token1: str
    callee: str

    @classmethod
    def create(
        cls,
        c: Contracts,
        factory: str,
        callee: str,
        a: str,
        b: str,
        sqrt_price_x96: int,
        liquidity: int,
    ) -> V3Pool:
        """The pool of `a` and `b` initialised at `sqrt_price_x96` (token1 per token0 in
        smallest units, Q64.96) with `liquidity` over the full range."""
        c.call(factory, "createPool", a, b, FEE, gas=8_000_000)
        address = c.at(c.read(factory, "getPool", a, b, FEE), "UniswapV3Pool")
        c.call(address, "initialize", sqrt_price_x96)
        pool = V3Pool(c, address, *ordered(a, b), callee)
        if liquidity:
            c.call(callee, "mint", address, *FULL_RANGE, liquidity)
        return pool

    def sqrt_price(self) -> int:
        return int(self.contracts.read(self.address, "slot0")[0])

    def swap_call(self, sqrt_price_limit: int) -> dict[str, str]:
        """A swap that moves the price to `sqrt_price_limit` (or as far as the liquidity
        allows), paid by the callee."""
        zero_for_one = sqrt_price_limit < self.sqrt_price()
        return self.contracts.transaction(
            self.callee,
            "swap",
            self.address,
            zero_for_one,
            2**255 - 1,
            sqrt_price_limit,
            gas=3_000_000,
        )

    def swap_to(self, sqrt_price_limit: int) -> None:
        self.contracts.execute(self.swap_call(sqrt_price_limit))

    def burn(self, liquidity: int) -> None:
        self.contracts.call(self.callee, "burn", self.address, *FULL_RANGE, liquidity)


def callee(c: Contracts, *funded: tuple[str, int]) -> str:
    """A V3Callee holding `amount` of each `(token, amount)`."""
    address = c.deploy("V3Callee")
    for token_address, amount in funded:
        c.call(token_address, "transfer", address, amount)
    return address


def sqrt_price_x96(price: int | float, decimals0: int = 0, decimals1: int = 0) -> int:
    """The sqrtPriceX96 of `price` whole token1 per whole token0 (approximately)."""
    return math.isqrt(int(price * 10**decimals1 * 2**192) // 10**decimals0)


@dataclass(frozen=True)
class Feed:
    """A real FluxAggregator with one oracle (the sender), behind a real
    EACAggregatorProxy: the address a feed is published under."""

    contracts: Contracts
    aggregator: str
    proxy: str
    decimals: int

    @classmethod
    def create(
        cls, c: Contracts, decimals: int, description: str, answer: int | None = None
    ) -> Feed:
        aggregator = aggregator_for(c, decimals, description)
        proxy = c.deploy("EACAggregatorProxy", aggregator, "0x" + "00" * 20)
        feed = cls(c, aggregator, proxy, decimals)
        if answer is not None:
            feed.answer(answer)
        return feed

    def answer_call(self, answer: int, aggregator: str | None = None) -> dict[str, str]:
        """The oracle's submission of `answer` (in units of 10^-decimals) for the next
        round; with one oracle each round is answered at once (`AnswerUpdated`)."""
        c, target = self.contracts, aggregator or self.aggregator
        next_round = c.read(target, "latestRound") + 1
        return c.transaction(target, "submit", next_round, answer)

    def answer(self, answer: int, aggregator: str | None = None) -> None:
        self.contracts.execute(self.answer_call(answer, aggregator))

    def latest(self) -> tuple[int, int]:
        """The proxy's `latestRoundData()`: (answer, updatedAt)."""
        _, answer, _, updated_at, _ = self.contracts.read(self.proxy, "latestRoundData")
        return answer, updated_at

    def move_to(self, aggregator: str) -> None:
        """Point the proxy at another aggregator, as Chainlink does (no event)."""
        self.contracts.call(self.proxy, "proposeAggregator", aggregator)
        self.contracts.call(self.proxy, "confirmAggregator", aggregator)


def aggregator_for(c: Contracts, decimals: int, description: str) -> str:
    """A FluxAggregator answered by the sender alone: payment 0 (no LINK), any value."""
    aggregator = c.deploy(
        "FluxAggregator",
        "0x" + "00" * 19 + "01",  # the LINK token: never called with a payment of 0
        0,
        3600,
        "0x" + "00" * 20,
        -(2**255),
        2**255 - 1,
        decimals,
        description,
    )
    c.call(aggregator, "changeOracles", [], [c.sender], [c.sender], 1, 1, 0)
    return aggregator
