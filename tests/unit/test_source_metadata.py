"""Working out a pool's base and decimals from what the chain says (pure)."""

from __future__ import annotations

import pytest

from indexer.source_metadata import Facts, resolve
from indexer.sources import SourcesError, parse_sources

A, B = "0x" + "0a" * 20, "0x" + "0b" * 20
POOL = Facts(token0=A, token1=B, decimals0=18, decimals1=6, symbol0="WETH", symbol1="USDC")


def one(**fields: object):  # type: ignore[no-untyped-def]
    entry = {"name": "p", "kind": "uniswap_v2", "token": "WETH", "quote": "USDC",
             "address": "0x" + "01" * 20, **fields}  # fmt: skip
    sources = parse_sources({"source": [entry]}, "f.toml")
    return sources, sources.sources[0]


@pytest.mark.parametrize(
    ("fields", "base"),
    [({}, "token0"), ({"token": "USDC", "quote": "WETH"}, "token1"),
     ({"price_of": "usdc"}, "token1"), ({"token": "X", "price_of": B}, "token1"),
     ({"base": "token0", "decimals0": 18}, "token0")],
)  # fmt: skip
def test_the_base_and_decimals_come_from_the_chain(fields: dict[str, object], base: str) -> None:
    sources, source = one(**fields)
    resolved = resolve(sources, source, POOL)
    assert (resolved.base, resolved.decimals0, resolved.decimals1) == (base, 18, 6)
    assert resolved.resolved


@pytest.mark.parametrize(
    ("fields", "facts", "message"),
    [({"decimals1": 18}, POOL, "field 'decimals1': the file says 18, the chain says 6"),
     ({"token": "DAI"}, POOL, "field 'price_of': missing, and token 'DAI' is not the symbol"),
     ({"price_of": "USDT"}, POOL,
      "field 'price_of': 'USDT' is not exactly one of the pool's tokens: token0 0x0a"),
     ({"price_of": "WETH"}, Facts(A, B, 18, 18, "WETH", "weth"), "'WETH' is not exactly one"),
     ({"base": "token1"}, POOL,
      "field 'base': the file says 'token1', the chain says WETH is token0"),
     ({"price_of": "USDC", "base": "token0"}, POOL,
      "field 'base': the file says 'token0', the chain says 'token1'")],
)  # fmt: skip
def test_a_file_the_chain_contradicts_is_refused(
    fields: dict[str, object], facts: Facts, message: str
) -> None:
    sources, source = one(**fields)
    with pytest.raises(SourcesError) as caught:
        resolve(sources, source, facts)
    assert str(caught.value).startswith("PRICE_SOURCES f.toml: source 1 ('p'): ")
    assert message in str(caught.value)


def test_a_feed_takes_its_decimals_from_the_chain() -> None:
    entry = {"name": "f", "kind": "chainlink", "token": "ETH", "quote": "USD", "address": A}
    sources = parse_sources({"source": [entry]}, "f.toml")
    assert resolve(sources, sources.sources[0], Facts(decimals=8)).decimals == 8
    sources = parse_sources({"source": [{**entry, "decimals": 6}]}, "f.toml")
    with pytest.raises(SourcesError, match="field 'decimals': the file says 6, the chain says 8"):
        resolve(sources, sources.sources[0], Facts(decimals=8))
