"""Prices from a block's logs: Uniswap V2 `Sync`, Uniswap V3 `Initialize` and `Swap`,
Chainlink `AnswerUpdated`, and derived prices over them (docs/prices.md).

Pure: `Pricer.updates` turns one block's log rows into price updates, given the legs'
latest prices before the block. Arithmetic is exact (`Fraction`): `sqrtPriceX96**2`
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
_Q192 = 2**192


@dataclass(frozen=True)
class Update:
    """One price update: `price` is the exact decimal string (`priceExact`)."""

    token: str
    price: str
    source: str
    quote: str
    log_index: int
    updated_at: int | None = None  # a feed's `updatedAt`, seconds


# The latest price of a token before the block being priced (its `priceExact`), or None.
LatestBefore = Callable[[str], str | None]


class Pricer:
    """Decodes the logs of configured pools and feeds, and recomputes derived prices."""

    def __init__(self, sources: PriceSources) -> None:
        if not sources.resolved:
            raise ValueError("the sources' metadata must be read first (Store.prepare_prices)")
        self.sources = sources
        self.by_log: dict[tuple[str, str], list[Source]] = {}
        for source in sources.sources:
            for topic in TOPICS.get(source.kind, ()):
                assert source.address is not None
                self.by_log.setdefault((source.address, topic), []).append(source)

    def watches(self, logs: Iterable[Mapping[str, Any]]) -> bool:
        """Whether any of `logs` is one a source decodes (a cheap first pass)."""
        by_log = self.by_log
        return any((entry["address"], entry["topic0"]) in by_log for entry in logs)

    def updates(self, logs: Iterable[Mapping[str, Any]], latest: LatestBefore) -> list[Update]:
        """Every update in one block's `logs` (ascending log index), derived ones after
        the leg update that moved them. `latest` is asked for a leg not moved yet."""
        found: list[Update] = []
        known: dict[str, str | None] = {}
        for entry in logs:
            sources = self.by_log.get((entry["address"], entry["topic0"]))
            if not sources:
                continue
            for source in sources:
                update = _decode(source, entry)
                if update is None:
                    continue
                found.append(update)
                known[source.token] = update.price
                for derived in self.sources.dependents[source.token]:
                    value = self._derive(derived, known, latest)
                    if value is not None:
                        known[derived.token] = value
                        found.append(
                            Update(
                                derived.token, value, derived.name, derived.quote, update.log_index
                            )
                        )
        return found

    def _derive(
        self, derived: Source, known: dict[str, str | None], latest: LatestBefore
    ) -> str | None:
        """The product of the legs' latest `priceExact` values, rounded once; None when
        a leg has no price yet or a leg to invert is zero."""
        product = Fraction(1)
        for leg in derived.legs:
            if leg.token not in known:
                known[leg.token] = latest(leg.token)
            text = known[leg.token]
            if text is None:
                return None
            value = Fraction(Decimal(text))
            if leg.inverted:
                if value == 0:
                    return None
                value = 1 / value
            product *= value
        return round_exact(product)


def _decode(source: Source, entry: Mapping[str, Any]) -> Update | None:
    """The update one log carries for `source`, or None (a zero reserve or price, a thin
    pool, or a log that does not have the event's shape)."""
    try:
        value, updated_at = _VALUE[source.kind](source, entry)
    except (ValueError, TypeError, IndexError) as exc:
        log.warning(
            "source %s: log %s of block %s is not a well-formed event: %s",
            source.name,
            entry.get("log_index"),
            entry.get("block_number"),
            exc,
        )
        return None
    if value is None:
        return None
    return Update(
        source.token,
        round_exact(value),
        source.name,
        source.quote,
        int(entry["log_index"]),
        updated_at,
    )


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


def _v2(source: Source, entry: Mapping[str, Any]) -> tuple[Fraction | None, None]:
    decimals0, decimals1 = _known(source.decimals0), _known(source.decimals1)
    reserve0, reserve1 = _words(entry["data"], 2)
    if reserve0 == 0 or reserve1 == 0:
        return None, None
    if source.min_liquidity is not None:
        quote_reserve, decimals = (
            (reserve1, decimals1) if source.base == "token0" else (reserve0, decimals0)
        )
        if Fraction(quote_reserve, 10**decimals) < Fraction(source.min_liquidity):
            return None, None
    price = Fraction(reserve1 * 10**decimals0, reserve0 * 10**decimals1)
    return _oriented(source, price), None


def _v3(source: Source, entry: Mapping[str, Any]) -> tuple[Fraction | None, None]:
    if entry["topic0"] == INITIALIZE_V3:
        sqrt_price = _words(entry["data"], 2)[0]
    else:
        sqrt_price = _words(entry["data"], 5)[2]
    if sqrt_price == 0:
        return None, None
    price = Fraction(sqrt_price * sqrt_price, _Q192) * Fraction(10) ** (
        _known(source.decimals0) - _known(source.decimals1)
    )
    return _oriented(source, price), None


def _chainlink(source: Source, entry: Mapping[str, Any]) -> tuple[Fraction | None, int]:
    topic = entry["topic1"]
    if topic is None:
        raise ValueError("no topic 1 (the answer)")
    answer = _signed(int(topic, 16))
    (updated_at,) = _words(entry["data"], 1)
    return Fraction(answer, 10 ** _known(source.decimals)), updated_at


_VALUE: dict[str, Callable[[Source, Mapping[str, Any]], tuple[Fraction | None, int | None]]] = {
    "uniswap_v2": _v2,
    "uniswap_v3": _v3,
    "chainlink": _chainlink,
}
