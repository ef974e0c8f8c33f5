"""Chainlink sources on the real contracts (FluxAggregator behind an EACAggregatorProxy,
MockV3Aggregator): a source may name the proxy, the follower follows it to each new
aggregator without missing an answer, and a feed that answers without emitting
`AnswerUpdated` gets a warning naming it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from chainpulse import protocols as p
from chainpulse.contracts import Contracts
from chainpulse.devnet import RedisServer, wait_until
from indexer.proxies import PREFIX, Following
from tests.harness.stack import FOLLOWING, Stack
from tests.harness.stack import stack as make_stack
from tests.prices.conftest import stored

WAIT = 20


def wait_stored(s: Stack, token: str, expected: list[tuple[int, str]]) -> None:
    try:
        wait_until(lambda: stored(s, token) == expected, WAIT, f"{token}'s prices stored")
    except TimeoutError as exc:
        rows = s.rows_per_height(0, s.anvil.head())
        node = s.node_rows_per_height(0, s.anvil.head())
        raise AssertionError(
            f"{exc}: {stored(s, token)}, not {expected}\nrows per height {rows}, "
            f"on the node {node}\n{s.tails()}"
        ) from None


def answered(feed: p.Feed, answer: int, aggregator: str | None = None) -> int:
    """Submit `answer` (whole dollars) and return its block."""
    receipt = feed.contracts.execute(feed.answer_call(answer * 10**8, aggregator))
    return int(receipt["blockNumber"], 16)


def test_a_proxy_prices_from_its_aggregator_and_follows_it_to_the_next(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with make_stack("sqlite", tmp_path, redis_server, **FOLLOWING) as s:
        c = Contracts(s.anvil)
        feed = p.Feed.create(c, 8, "ETH / USD", 3_000 * 10**8)
        initial = (s.anvil.head(), "3000")  # the follower starts at this head
        s.use_price_sources([
            {"name": "eth-usd", "kind": "chainlink", "token": "ETH", "quote": "USD",
             "address": feed.proxy},
        ])  # fmt: skip
        s.start_worker(wait=False, loglevel="info")
        s.follower()
        wait_until(lambda: s.start_block() is not None, WAIT, "the follower starting")
        first = answered(feed, 3_100)
        wait_stored(s, "ETH", [initial, (first, "3100")])

        new = p.aggregator_for(c, 8, "ETH / USD")
        answered(feed, 3_200, new)  # the new aggregator answers before it is switched to
        feed.move_to(new)  # proposeAggregator, confirmAggregator: no event
        switch = s.anvil.head()
        # answered at once, before the follower's next sweep reads aggregator() again
        second = answered(feed, 3_300, new)
        answered(feed, 9_999)  # the aggregator the proxy left: not ETH's price any more
        third = answered(feed, 3_400, new)
        wait_stored(s, "ETH", [initial, (first, "3100"), (second, "3300"), (third, "3400")])
        kept = s.store.get_meta(PREFIX + feed.proxy)
        assert kept is not None
        assert Following.load(kept).history == ((0, feed.aggregator), (switch, new))
        assert c.read(feed.proxy, "latestRoundData")[1] == 3_400 * 10**8

        def announced() -> set[str]:
            return {
                d["price"] for t, d in s.events() if t == "price.updated" and d["token"] == "ETH"
            }

        wait_until(lambda: {"3300", "3400"} <= announced(), WAIT, "the answers announced")

        # a worker started now prices from the aggregator the database recorded
        s.start_worker(wait=False)
        fourth = answered(feed, 3_500, new)
        wait_stored(
            s,
            "ETH",
            [initial, (first, "3100"), (second, "3300"), (third, "3400"), (fourth, "3500")],
        )


def test_a_feed_that_answers_without_emitting_is_named(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="indexer.proxies")
    with make_stack("sqlite", tmp_path, redis_server, **FOLLOWING) as s:
        c = Contracts(s.anvil)
        feed = p.Feed.create(c, 8, "ETH / USD", 3_000 * 10**8)
        mock = c.deploy("MockV3Aggregator", 8, 1_000 * 10**8)
        s.use_price_sources([
            {"name": "eth-usd", "kind": "chainlink", "token": "ETH", "quote": "USD",
             "address": feed.proxy},
            {"name": "btc-mock", "kind": "chainlink", "token": "BTC", "quote": "USD",
             "address": mock},
        ])  # fmt: skip
        s.start_worker(wait=False)
        s.follower(price_silence_warn=3)
        wait_until(lambda: s.start_block() is not None, WAIT, "the follower starting")
        answered(feed, 3_100)
        c.call(mock, "updateAnswer", 60_000 * 10**8)  # no AnswerUpdated

        def warned() -> list[str]:
            return [r.getMessage() for r in caplog.records if "latestRoundData" in r.getMessage()]

        def mined_and_warned() -> list[str]:
            s.anvil.mine()  # the chain goes on while the follower sweeps each second
            return warned()

        wait_until(mined_and_warned, WAIT, "a warning about the silent feed", interval=0.3)
        assert [w.split(":")[0] for w in warned()] == ["price source btc-mock"]
        assert mock in warned()[0]
        assert stored(s, "BTC") == []
        assert [v for _, v in stored(s, "ETH")][-1:] == ["3100"]
