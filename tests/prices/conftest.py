"""The chain prices tests' market on the look-alike contracts (which move prices to any
value at all): anvil with the test pair, a second pair, the pool and the feed deployed
over real ERC-20s, a price sources file for them, and the stack over it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from chainpulse.contracts import Contracts
from chainpulse.devnet import RedisServer
from chainpulse.protocols import token
from indexer import models as m
from tests.harness import sources
from tests.harness.stack import FOLLOWING, Stack
from tests.harness.stack import stack as make_stack


@dataclass
class DeployedMarket:
    stack: Stack
    contracts: Contracts
    pair: str  # WETH in USDC: token0 WETH (18 decimals), token1 USDC (6)
    pair2: str  # DAI in USDC: token0 USDC (6), token1 DAI (18), so base token1
    pool: str  # UNI in WETH, V3
    feed: str  # ETH in USD, 8 decimals
    sources: Path


def stored(s: Stack, token: str) -> list[tuple[int, str]]:
    """`token`'s stored prices in chain order, as (block, exact decimal)."""
    with s.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.prices.c.block_number, m.prices.c.price)
            .where(m.prices.c.token == token)
            .order_by(m.prices.c.block_number, m.prices.c.log_index)
        )
        return [(int(b), format(v, "f")) for b, v in rows]


def market_sources(pair: str, pair2: str, pool: str, feed: str) -> list[sources.Entry]:
    """The sources of the deployed market."""
    return [
        {"name": "weth-usdc", "kind": "uniswap_v2", "token": "WETH", "quote": "USDC",
         "address": pair, "base": "token0", "decimals0": 18, "decimals1": 6},
        {"name": "usdc-dai", "kind": "uniswap_v2", "token": "DAI", "quote": "USDC",
         "address": pair2, "base": "token1", "decimals0": 6, "decimals1": 18},
        {"name": "uni-weth", "kind": "uniswap_v3", "token": "UNI", "quote": "WETH",
         "address": pool, "base": "token0", "decimals0": 18, "decimals1": 18},
        {"name": "eth-usd", "kind": "chainlink", "token": "ETH", "quote": "USD",
         "address": feed, "decimals": 8},
        {"name": "uni-usd", "kind": "derived", "token": "UNI-USD", "quote": "USD",
         "legs": ["UNI", "ETH"]},
    ]  # fmt: skip


def deploy_market(s: Stack) -> DeployedMarket:
    contracts = Contracts(s.anvil)
    weth, usdc, dai, uni = (
        token(contracts, symbol, decimals)
        for symbol, decimals in [("WETH", 18), ("USDC", 6), ("DAI", 18), ("UNI", 18)]
    )
    pair = contracts.deploy("TestPair", 10**18, 10**6)
    contracts.call(pair, "setTokens", weth, usdc)
    pair2 = contracts.deploy("TestPair", 10**6, 10**18)
    contracts.call(pair2, "setTokens", usdc, dai)
    pool = contracts.deploy("TestPool")
    contracts.call(pool, "setTokens", uni, weth)
    feed = contracts.deploy("TestFeed")
    path = s.use_price_sources(market_sources(pair, pair2, pool, feed))
    return DeployedMarket(s, contracts, pair, pair2, pool, feed, path)


@pytest.fixture
def market(tmp_path: Path, redis_server: RedisServer) -> Iterator[DeployedMarket]:
    """The market on SQLite, with a worker running on it."""
    with make_stack("sqlite", tmp_path, redis_server, **FOLLOWING) as s:
        deployed = deploy_market(s)
        s.start_worker(wait=False, loglevel="info")
        yield deployed
