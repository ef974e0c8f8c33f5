"""Prices from a block's logs: Uniswap V2 `Sync`, Uniswap V3 `Initialize` and `Swap`,
Chainlink `AnswerUpdated`, derived prices over them, and when each turns stale
(docs/prices.md).

Pure: `Pricer.updates` turns one block's log rows into price updates, given the
tokens' latest prices before the block. Arithmetic is exact (`Fraction`): `sqrtPriceX96**2`
reaches 2**320. Each update carries the value rounded once to `priceExact`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from eth_utils import keccak

from indexer.exact import round_exact
from indexer.sources import PriceSources, Source

log = logging.getLogger(__name__)


def _topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


SYNC = _topic("Sync(uint112,uint112)")
SWAP_V3 = _topic("Swap(address,address,int256,int256,uint160,uint128,int24)")
INITIALIZE_V3 = _topic("Initialize(uint160,int24)")
ANSWER_UPDATED = _topic("AnswerUpdated(int256,uint256,uint256)")

TOPICS: dict[str, tuple[str, ...]] = {
    "uniswap_v2": (SYNC,),
    "uniswap_v3": (SWAP_V3, INITIALIZE_V3),
    "chainlink": (ANSWER_UPDATED,),
}
_Q96 = 2**96
_Q192 = 2**192


# Why a price is stale (`staleReason`): the source would not publish now.
LOW_LIQUIDITY = "low-liquidity"  # a pool's quote reserve under its `min_liquidity`
NO_RESERVES = "no-reserves"  # a V2 pair holding none of one token
FEED_AGE = "feed-age"  # a feed's `updatedAt` older than its `max_age` in chain time
STALE_LEG = "stale-leg"  # a derived price with a stale leg
STALE_REASONS = (LOW_LIQUIDITY, NO_RESERVES, FEED_AGE, STALE_LEG)


@dataclass(frozen=True)
class Update:
    """One price update: `price` is the exact decimal string (`priceExact`). A stale
    update repeats the last good price with its reason; `log_index` is None for one
    that no log carries (a feed aged past `max_age`, judged before the block's logs)."""

    token: str
    price: str
    source: str
    quote: str
    log_index: int | None
    updated_at: int | None = None  # a feed's `updatedAt`, seconds
    stale_reason: str | None = None


@dataclass(frozen=True)
class Known:
    """A token's latest price before the update being decoded."""

    price: str  # `priceExact`
    stale_reason: str | None = None
    updated_at: int | None = None  # a feed's `updatedAt`
    block: int | None = None  # the block of its row (None: manual, or not known)

    @property
    def stale(self) -> bool:
        return self.stale_reason is not None


# The latest price of a token before the block being priced, or None.
LatestBefore = Callable[[str], Known | None]


class Pricer:
    """Decodes the logs of configured pools and feeds, recomputes derived prices, and
    says when a price turns stale."""

    def __init__(self, sources: PriceSources) -> None:
        if not sources.resolved:
            raise ValueError("the sources' metadata must be read first (Store.prepare_prices)")
        self.sources = sources
        self.by_log: dict[tuple[str, str], list[Source]] = {}
        for source in sources.sources:
            emitters = [a for _, a in source.aggregators] or [source.address or ""]
            for topic in TOPICS.get(source.kind, ()):
                for emitter in dict.fromkeys(emitters):
                    self.by_log.setdefault((emitter, topic), []).append(source)
        # feeds whose answers age: every block is judged, logs or not
        self.aging = tuple(s for s in sources.sources if s.max_age is not None)

    def watches(self, logs: Iterable[Mapping[str, Any]]) -> bool:
        """Whether a block with `logs` may change a price (a cheap first pass)."""
        if self.aging:
            return True
        by_log = self.by_log
        return any((entry["address"], entry["topic0"]) in by_log for entry in logs)

    def updates(
        self,
        logs: Iterable[Mapping[str, Any]],
        latest: LatestBefore,
        timestamp: int,
        age: bool = True,
        settled: Callable[[Known], bool] = lambda _: True,
    ) -> list[Update]:
        """Every update of one block (`logs` in ascending log index, `timestamp` its
        chain time): first (with `age`) the feeds that aged past `max_age` since their
        last answer, where `settled` says that answer is surely their latest, then each
        log's update, derived ones after the leg update that moved them. `latest` is
        asked for a token not moved yet in this block."""
        found: list[Update] = []
        known: dict[str, Known | None] = {}

        def current(token: str) -> Known | None:
            if token not in known:
                known[token] = latest(token)
            return known[token]

        def publish(source: Source, update: Update) -> None:
            found.append(update)
            known[update.token] = Known(update.price, update.stale_reason, update.updated_at)
            for derived in self.sources.dependents[source.token]:
                value = _derive(derived, current)
                if value is None:
                    continue
                price, reason = value
                before = current(derived.token)
                same = before is not None and before.stale and before.price == price
                if reason is not None and same:
                    continue  # stale already, and still the same price
                found.append(
                    Update(
                        derived.token,
                        price,
                        derived.name,
                        derived.quote,
                        update.log_index,
                        None,
                        reason,
                    )
                )
                known[derived.token] = Known(price, reason)

        for source in self.aging if age else ():
            now = current(source.token)
            if now is None or now.stale or not _aged(source, now.updated_at, timestamp):
                continue
            if settled(now):
                publish(source, _stale(source, now, None, FEED_AGE))
        for entry in logs:
            sources = self.by_log.get((entry["address"], entry["topic0"]))
            if not sources:
                continue
            for source in sources:
                if source.aggregators and not _in_force(source, entry):
                    continue  # an aggregator the proxy did not point at then
                reading = _decode(source, entry)
                if reading is None:
                    continue
                value, updated_at, reason = reading
                if reason is None and _aged(source, updated_at, timestamp):
                    reason = FEED_AGE  # an answer already too old when it lands
                log_index = int(entry["log_index"])
                if reason is not None:
                    now = current(source.token)
                    if now is None or now.stale:
                        continue  # no good price to repeat, or stale already
                    publish(source, _stale(source, now, log_index, reason))
                    continue
                assert value is not None
                price = round_exact(value)
                update = Update(
                    source.token, price, source.name, source.quote, log_index, updated_at
                )
                publish(source, update)
        return found


def _in_force(source: Source, entry: Mapping[str, Any]) -> bool:
    """Whether `entry` comes from the aggregator a proxy source pointed at then."""
    return source.emitter_at(entry["block_number"]) == entry["address"]


def _aged(source: Source, updated_at: int | None, timestamp: int) -> bool:
    """Whether a feed's answer of `updated_at` is past its `max_age` at `timestamp`."""
    if source.max_age is None or updated_at is None:
        return False
    return timestamp - updated_at > source.max_age


def _stale(source: Source, now: Known, log_index: int | None, reason: str) -> Update:
    """`source`'s last good price, turned stale for `reason`."""
    return Update(
        source.token, now.price, source.name, source.quote, log_index, now.updated_at, reason
    )


def _derive(
    derived: Source, current: Callable[[str], Known | None]
) -> tuple[str, str | None] | None:
    """The product of the legs' latest `priceExact` values, rounded once, stale when a
    leg is; None when a leg has no price yet or a leg to invert is zero."""
    product = Fraction(1)
    reason = None
    for leg in derived.legs:
        now = current(leg.token)
        if now is None:
            return None
        if now.stale:
            reason = STALE_LEG
        value = Fraction(Decimal(now.price))
        if leg.inverted:
            if value == 0:
                return None
            value = 1 / value
        product *= value
    return round_exact(product), reason


# What one log says: the value (None when there is none to publish), a feed's
# `updatedAt`, and why the source would not publish now (None when it would).
Reading = tuple[Fraction | None, int | None, str | None]


def _decode(source: Source, entry: Mapping[str, Any]) -> Reading | None:
    """What one log says for `source`, or None (a zero price, or a log that does not
    have the event's shape)."""
    try:
        reading = _VALUE[source.kind](source, entry)
    except (ValueError, TypeError, IndexError) as exc:
        log.warning(
            "source %s: log %s of block %s is not a well-formed event: %s",
            source.name,
            entry.get("log_index"),
            entry.get("block_number"),
            exc,
        )
        return None
    if reading[0] is None and reading[2] is None:
        return None
    return reading


def _words(data: str, count: int) -> list[int]:
    body = data[2:] if data.startswith("0x") else data
    if len(body) < 64 * count:
        raise ValueError(f"data holds {len(body) // 64} words, expected {count}")
    return [int(body[i * 64 : (i + 1) * 64], 16) for i in range(count)]


def _signed(word: int) -> int:
    return word - 2**256 if word >= 2**255 else word


def _oriented(source: Source, token0_in_token1: Fraction) -> Fraction:
    return token0_in_token1 if source.base == "token0" else 1 / token0_in_token1


def _known(decimals: int | None) -> int:
    assert decimals is not None  # a Pricer holds resolved sources only
    return decimals


def _thin(source: Source, quote_reserve: Fraction) -> bool:
    """Whether a pool's quote reserve (whole tokens) is under its `min_liquidity`."""
    return source.min_liquidity is not None and quote_reserve < Fraction(source.min_liquidity)


def _v2(source: Source, entry: Mapping[str, Any]) -> Reading:
    decimals0, decimals1 = _known(source.decimals0), _known(source.decimals1)
    reserve0, reserve1 = _words(entry["data"], 2)
    if reserve0 == 0 or reserve1 == 0:
        return None, None, NO_RESERVES
    quote = (reserve1, decimals1) if source.base == "token0" else (reserve0, decimals0)
    if _thin(source, Fraction(quote[0], 10 ** quote[1])):
        return None, None, LOW_LIQUIDITY
    price = Fraction(reserve1 * 10**decimals0, reserve0 * 10**decimals1)
    return _oriented(source, price), None, None


def _v3(source: Source, entry: Mapping[str, Any]) -> Reading:
    decimals0, decimals1 = _known(source.decimals0), _known(source.decimals1)
    if entry["topic0"] == INITIALIZE_V3:
        sqrt_price, liquidity = _words(entry["data"], 2)[0], 0  # nothing minted yet
    else:
        words = _words(entry["data"], 5)
        sqrt_price, liquidity = words[2], words[3]
    if sqrt_price == 0:
        return None, None, None
    if source.min_liquidity is not None:
        # the in-range liquidity's virtual reserve of the quote token:
        # token1 = L * sqrtP, token0 = L / sqrtP, with sqrtP = sqrtPriceX96 / 2^96
        if source.base == "token0":
            reserve = Fraction(liquidity * sqrt_price, _Q96 * 10**decimals1)
        else:
            reserve = Fraction(liquidity * _Q96, sqrt_price * 10**decimals0)
        if _thin(source, reserve):
            return None, None, LOW_LIQUIDITY
    price = Fraction(sqrt_price * sqrt_price, _Q192) * Fraction(10) ** (decimals0 - decimals1)
    return _oriented(source, price), None, None


def _chainlink(source: Source, entry: Mapping[str, Any]) -> Reading:
    topic = entry["topic1"]
    if topic is None:
        raise ValueError("no topic 1 (the answer)")
    answer = _signed(int(topic, 16))
    return Fraction(answer, 10 ** _known(source.decimals)), answer_updated_at(entry["data"]), None


def answer_updated_at(data: str) -> int:
    """`updatedAt` of an `AnswerUpdated` log's data; ValueError when it holds no word."""
    (updated_at,) = _words(data, 1)
    return updated_at


_VALUE: dict[str, Callable[[Source, Mapping[str, Any]], Reading]] = {
    "uniswap_v2": _v2,
    "uniswap_v3": _v3,
    "chainlink": _chainlink,
}
