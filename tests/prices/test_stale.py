"""Stale prices end to end on the real contracts (UniswapV2Pair, FluxAggregator behind
its proxy), through the worker, the follower, the server and the JavaScript
socket.io-client: a drained pair and a feed past its `max_age` (chain time) push
`stale: true` with the last good price, the snapshot and `/api/prices` say so too, a
reorg that removes the drain brings the fresh price back, and a fresh update clears it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from chainpulse import protocols as p
from chainpulse.contracts import Contracts
from chainpulse.devnet import RedisServer, wait_until
from tests.harness.jsclient import JsClient
from tests.harness.realtime import Server
from tests.harness.stack import FOLLOWING
from tests.harness.stack import stack as make_stack

WAIT = 30


def update(client: JsClient, token: str, **fields: Any) -> dict[str, Any]:
    def match(event: str, data: dict[str, Any]) -> bool:
        return event == "price-update" and data["token"] == token and fields.items() <= data.items()

    return client.wait(match, WAIT, f"price-update {token} {fields}")


def api(server: Server, token: str) -> dict[str, Any]:
    prices = requests.get(f"{server.url}/api/prices", timeout=10).json()
    return next(p for p in prices if p["token"] == token)


def test_a_price_says_when_it_is_stale_everywhere_it_is_read(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with make_stack("sqlite", tmp_path, redis_server, **FOLLOWING) as s:
        c = Contracts(s.anvil)
        weth, usdc = p.token(c, "WETH", 18), p.token(c, "USDC", 6)
        factory = c.deploy("UniswapV2Factory", c.sender)
        pair = p.V2Pair.create(c, factory, weth, 1_000 * 10**18, usdc, 3_000_000 * 10**6)
        feed = p.Feed.create(c, 8, "ETH / USD", 3_000 * 10**8)
        s.use_price_sources([
            {"name": "weth-usdc", "kind": "uniswap_v2", "token": "WETH", "quote": "USDC",
             "address": pair.address, "min_liquidity": 1_000_000},
            {"name": "eth-usd", "kind": "chainlink", "token": "ETH", "quote": "USD",
             "address": feed.proxy, "max_age": 600},
        ])  # fmt: skip
        s.start_worker(wait=False)
        s.follower()
        wait_until(lambda: s.start_block() is not None, WAIT, "the follower starting")
        server = Server(s.settings.redis_url, s.settings.database_url).start()
        client = JsClient(server.url, ["WETH", "ETH"], tmp_path)
        try:
            client.wait(lambda e, d: e == "ack" and d["channel"] == "price:ETH", WAIT, "acks")
            c.call(pair.address, "sync")  # 3,000,000 USDC: over the floor
            fresh = update(client, "WETH", priceExact="3000", stale=False)
            assert fresh["staleReason"] is None

            # drained to 300 USDC: the last good price, stale, once
            before = s.anvil.head()
            pair.drain(0.9999)
            stale = update(client, "WETH", stale=True)
            assert (stale["priceExact"], stale["staleReason"]) == ("3000", "low-liquidity")
            assert stale["blockNumber"] == s.anvil.head()
            listed = api(server, "WETH")
            assert (listed["stale"], listed["staleReason"]) == (True, "low-liquidity")
            late = JsClient(server.url, ["WETH"], tmp_path)
            try:
                snapshot = update(late, "WETH", snapshot=True)
                assert (snapshot["stale"], snapshot["priceExact"]) == (True, "3000")
            finally:
                late.close()

            # a reorg that removes the drain brings the fresh price back
            s.anvil.call("anvil_reorg", s.anvil.head() - before, [])
            restored = client.wait_after(
                "reorg",
                lambda e, d: e == "price-update" and d["token"] == "WETH",
                WAIT,
                "WETH after the reorg",
            )
            assert (restored["priceExact"], restored["stale"]) == ("3000", False)
            wait_until(lambda: api(server, "WETH")["stale"] is False, WAIT, "the API fresh")

            # the feed: fresh, then past max_age by chain time, then fresh again
            c.execute(feed.answer_call(3_100 * 10**8))
            update(client, "ETH", priceExact="3100", stale=False)
            s.anvil.call("evm_increaseTime", 601)
            s.anvil.mine()
            aged = update(client, "ETH", stale=True)
            assert (aged["priceExact"], aged["staleReason"]) == ("3100", "feed-age")
            assert api(server, "ETH")["staleReason"] == "feed-age"
            c.execute(feed.answer_call(3_200 * 10**8))
            update(client, "ETH", priceExact="3200", stale=False)
            assert api(server, "ETH")["stale"] is False
            stale_pushes = [d for d in client.of("price-update") if d["stale"]]
            assert len(stale_pushes) == 2  # each turn pushed once
        finally:
            client.close()
            server.stop()
