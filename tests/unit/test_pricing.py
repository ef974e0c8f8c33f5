"""Decoding Sync, Initialize, Swap and AnswerUpdated logs, and derived prices, checked
against values computed here with Fraction."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from indexer.exact import round_exact
from indexer.price_decoding import (
    ANSWER_UPDATED,
    FEED_AGE,
    INITIALIZE_V3,
    LOW_LIQUIDITY,
    NO_RESERVES,
    STALE_LEG,
    SWAP_V3,
    SYNC,
    Known,
    Pricer,
)
from indexer.sources import parse_sources

PAIR = "0x" + "11" * 20
POOL = "0x" + "22" * 20
FEED = "0x" + "33" * 20


def sources(**overrides: Any) -> Pricer:
    entries = [
        {"name": "pair", "kind": "uniswap_v2", "token": "WETH", "quote": "USDC",
         "address": PAIR, "base": "token0", "decimals0": 18, "decimals1": 6},
        {"name": "pool", "kind": "uniswap_v3", "token": "UNI", "quote": "WETH",
         "address": POOL, "base": "token1", "decimals0": 6, "decimals1": 18},
        {"name": "feed", "kind": "chainlink", "token": "ETH", "quote": "USD",
         "address": FEED, "decimals": 8},
        {"name": "uni-usd", "kind": "derived", "token": "UNI-USD", "quote": "USD",
         "legs": ["UNI", "ETH"]},
        {"name": "usd-in-eth", "kind": "derived", "token": "USD-ETH", "quote": "ETH",
         "legs": ["1/ETH"]},
    ]  # fmt: skip
    for entry in entries:
        entry.update(overrides.get(entry["name"], {}))
    return Pricer(parse_sources({"source": entries}, "test.toml"))


def word(value: int) -> str:
    return f"{value % 2**256:064x}"


def log(
    address: str, topic0: str, words: list[int], index: int = 0, topic1: str | None = None
) -> dict[str, Any]:
    return {
        "block_number": 7,
        "log_index": index,
        "address": address,
        "topic0": topic0,
        "topic1": topic1,
        "data": "0x" + "".join(word(w) for w in words),
    }


NOW = 1_700_000_000  # the block's timestamp


def nothing(_token: str) -> Known | None:
    return None


def test_sync_prices_token0_in_token1() -> None:
    r0, r1 = 3 * 10**18, 10_000 * 10**6 + 1  # 3 WETH, 10,000.000001 USDC: 3,333.33…
    [update] = sources().updates([log(PAIR, SYNC, [r0, r1])], nothing, NOW)
    assert update.token == "WETH" and update.quote == "USDC" and update.source == "pair"
    assert update.price == round_exact(Fraction(r1, 10**6) / Fraction(r0, 10**18))
    assert update.price == "3333.333333666666666666666666666666666667"


def test_sync_with_base_token1_inverts() -> None:
    pricer = sources(pair={"base": "token1"})
    r0, r1 = 2**112 - 1, 7  # a uint112 maximum reserve
    [update] = pricer.updates([log(PAIR, SYNC, [r0, r1])], nothing, NOW)
    assert update.price == round_exact(Fraction(r0, 10**18) / Fraction(r1, 10**6))


def test_a_zero_reserve_or_a_thin_pool_with_no_price_yet_publishes_nothing() -> None:
    assert sources().updates([log(PAIR, SYNC, [0, 5])], nothing, NOW) == []
    thin = sources(pair={"min_liquidity": 1000})  # whole USDC on the quote side
    assert thin.updates([log(PAIR, SYNC, [10**18, 999 * 10**6])], nothing, NOW) == []
    assert len(thin.updates([log(PAIR, SYNC, [10**18, 1000 * 10**6])], nothing, NOW)) == 1


def test_a_pair_under_its_floor_turns_stale_once_with_the_last_good_price() -> None:
    thin = sources(pair={"min_liquidity": 1000})
    good = {"WETH": Known("2000")}.get
    drained = log(PAIR, SYNC, [10**18, 999 * 10**6], index=4)
    [update] = thin.updates([drained], good, NOW)
    assert (update.price, update.stale_reason, update.log_index) == ("2000", LOW_LIQUIDITY, 4)
    # stale already: a second thin Sync says nothing new
    assert thin.updates([drained], {"WETH": Known("2000", LOW_LIQUIDITY)}.get, NOW) == []
    # a fresh Sync clears it, in the same block too
    refilled = log(PAIR, SYNC, [10**18, 3000 * 10**6], index=5)
    turned, fresh = thin.updates([drained, refilled], good, NOW)
    assert turned.stale_reason == LOW_LIQUIDITY
    assert (fresh.price, fresh.stale_reason) == ("3000", None)
    [empty] = sources().updates([log(PAIR, SYNC, [0, 5])], good, NOW)
    assert (empty.price, empty.stale_reason) == ("2000", NO_RESERVES)


def test_a_v3_pool_is_judged_on_the_virtual_reserve_of_its_quote_token() -> None:
    # the pool prices token1 (18 decimals) in token0 (6 decimals), its quote token:
    # reserve0 = L / sqrtP = L * 2^96 / sqrtPriceX96, in whole token0 units
    pool = sources(pool={"min_liquidity": 50})
    good = {"UNI": Known("7")}.get
    s = 2**96  # sqrtP = 1: reserve0 = L
    under = log(POOL, SWAP_V3, [0, 0, s, 49 * 10**6 + 999_999, 0])
    over = log(POOL, SWAP_V3, [0, 0, s, 50 * 10**6, 0])
    [update] = pool.updates([under], good, NOW)
    assert (update.price, update.stale_reason) == ("7", LOW_LIQUIDITY)
    [update] = pool.updates([over], good, NOW)
    assert update.stale_reason is None and update.price == round_exact(Fraction(10) ** 12)
    # base token0 measures token1: reserve1 = L * sqrtP; sqrtP = 2 gives 2L
    other = sources(pool={"min_liquidity": 50, "base": "token0", "token": "UNI"})
    edge = log(POOL, SWAP_V3, [0, 0, 2 * s, 25 * 10**18, 0])
    [update] = other.updates([edge], good, NOW)
    assert update.stale_reason is None
    short = log(POOL, SWAP_V3, [0, 0, 2 * s, 25 * 10**18 - 1, 0])
    [update] = other.updates([short], good, NOW)
    assert update.stale_reason == LOW_LIQUIDITY
    # Initialize has no liquidity yet: under any floor, and no price to repeat
    assert pool.updates([log(POOL, INITIALIZE_V3, [s, 0])], nothing, NOW) == []


def test_a_feed_past_its_max_age_turns_stale_by_chain_time_before_the_blocks_logs() -> None:
    aging = sources(feed={"max_age": 3600})
    answered = {"ETH": Known("2000", None, NOW - 3600)}.get
    assert aging.updates([], answered, NOW) == []  # exactly max_age: still fresh
    turned, leg = aging.updates([], answered, NOW + 1)
    assert (turned.token, turned.price, turned.stale_reason) == ("ETH", "2000", FEED_AGE)
    assert turned.log_index is None and turned.updated_at == NOW - 3600
    assert (leg.token, leg.stale_reason) == ("USD-ETH", STALE_LEG)  # 1/ETH, still its value
    assert leg.price == "0.0005"
    # a new answer in the same block clears it after
    feed = log(FEED, ANSWER_UPDATED, [NOW + 1], index=2, topic1="0x" + word(2100 * 10**8))
    found = aging.updates([feed], answered, NOW + 1)
    assert [(u.token, u.stale_reason) for u in found][-2:] == [("ETH", None), ("USD-ETH", None)]
    # an answer already older than max_age when it lands is stale on arrival
    old = log(FEED, ANSWER_UPDATED, [NOW - 4000], topic1="0x" + word(2100 * 10**8))
    [stale, _] = aging.updates([old], answered, NOW)
    assert (stale.price, stale.stale_reason) == ("2000", FEED_AGE)
    # without max_age a feed never ages
    assert sources().updates([], answered, NOW + 10**6) == []


def test_swap_and_initialize_use_sqrt_price() -> None:
    s = 2**160 - 1  # near the uint160 maximum
    swap = log(POOL, SWAP_V3, [-5, 7, s, 10**20, 2**24 - 3], index=1)
    init = log(POOL, INITIALIZE_V3, [2**96, 0], index=0)
    first, second = sources().updates([init, swap], nothing, NOW)
    # base token1 inverts token0-in-token1 = s^2 / 2^192 * 10^(6 - 18)
    assert first.price == round_exact(1 / (Fraction(1) * Fraction(10) ** (6 - 18)))
    assert second.price == round_exact(1 / (Fraction(s * s, 2**192) * Fraction(10) ** -12))
    assert sources().updates([log(POOL, INITIALIZE_V3, [0, 0])], nothing, NOW) == []


def test_answer_updated_reads_the_signed_answer_from_topic_one() -> None:
    negative = "0x" + word(-12_345_678_901)
    update, inverse = sources().updates(
        [log(FEED, ANSWER_UPDATED, [1_700_000_000], topic1=negative)], nothing, NOW
    )
    assert update.price == "-123.45678901"
    assert inverse.token == "USD-ETH" and inverse.price == round_exact(
        Fraction(-(10**8), 12_345_678_901)
    )
    assert update.updated_at == 1_700_000_000


def test_derived_follows_each_leg_with_the_others_latest() -> None:
    pricer = sources()
    feed = log(FEED, ANSWER_UPDATED, [1], index=0, topic1="0x" + word(2000 * 10**8))
    s = 2**96 * 3
    pool = log(POOL, SWAP_V3, [0, 0, s, 0, 0], index=1)
    latest = {"UNI": Known("0.5")}.get
    updates = pricer.updates([feed], latest, NOW)
    assert [(u.token, u.price) for u in updates] == [
        ("ETH", "2000"),
        ("UNI-USD", "1000"),  # UNI's latest before the block, times the new ETH
        ("USD-ETH", "0.0005"),
    ]
    updates = pricer.updates([feed, pool], latest, NOW)
    uni = round_exact(1 / (Fraction(s * s, 2**192) * Fraction(10) ** -12))
    assert updates[-1].token == "UNI-USD" and updates[-1].log_index == 1
    assert updates[-1].price == round_exact(Fraction(uni) * 2000)


def test_a_zero_leg_to_invert_and_a_missing_leg_publish_nothing() -> None:
    pricer = sources()
    zero = log(FEED, ANSWER_UPDATED, [1], topic1="0x" + word(0))
    assert [u.token for u in pricer.updates([zero], nothing, NOW)] == ["ETH"]


def test_a_malformed_log_is_skipped() -> None:
    short = log(PAIR, SYNC, [1])  # one word where Sync has two
    assert sources().updates([short], nothing, NOW) == []


def test_a_tie_reachable_with_uint112_reserves_rounds_half_to_even() -> None:
    from decimal import ROUND_HALF_EVEN, Context, Decimal

    pricer = sources(pair={"decimals0": 0, "decimals1": 0})
    wide = Context(prec=100)
    r0 = 2**9  # an odd r1 over 2^9 has 41 significant digits near 2^112, the last a 5
    r1 = next(  # the largest uint112 reserve where the tie goes down to an even digit
        r
        for r in range(2**112 - 1, 2**112 - 64, -2)
        if Decimal(r * 5**9).scaleb(-9, wide).as_tuple().digits[-2] % 2 == 0
    )
    exact = Decimal(r1 * 5**9).scaleb(-9, wide)
    assert len(exact.as_tuple().digits) == 41 and exact.as_tuple().digits[-1] == 5
    [update] = pricer.updates([log(PAIR, SYNC, [r0, r1])], nothing, NOW)
    expected = Context(prec=40, rounding=ROUND_HALF_EVEN).plus(exact)
    assert update.price == format(expected, "f")
    assert update.price != format(Context(prec=40, rounding="ROUND_HALF_UP").plus(exact), "f")
