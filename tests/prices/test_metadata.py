"""Metadata from the chain: a sources file gives no decimals and no token order, and one
whose values the chain contradicts is refused at start (by `chainpulse prices check`
and by a worker), naming the field, the file's value and the chain's. Real ERC-20s and
the real Uniswap V2 factory and pair on anvil."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainpulse import protocols
from chainpulse.contracts import Contracts
from chainpulse.devnet import Anvil
from tests.harness import sources
from tests.harness.environment import CELERY, CHAINPULSE, ROOT, service_env


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[Anvil, protocols.V2Pair, str, str]]:
    """anvil with a WETH/USDC pair and a feed; (anvil, pair, feed, weth)."""
    with Anvil() as anvil:
        c = Contracts(anvil)
        weth, usdc = protocols.token(c, "WETH", 18), protocols.token(c, "USDC", 6)
        factory = c.deploy("UniswapV2Factory", c.sender)
        pair = protocols.V2Pair.create(c, factory, weth, 10**18, usdc, 3_000 * 10**6)
        feed = protocols.Feed.create(c, 8, "ETH / USD", 3_000 * 10**8)
        yield anvil, pair, feed.aggregator, weth


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=service_env(**env), capture_output=True, text=True, timeout=30,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def pair_source(pair: str, **fields: object) -> sources.Entry:
    return {"name": "weth-usdc", "kind": "uniswap_v2", "token": "WETH", "quote": "USDC",
            "address": pair, **fields}  # fmt: skip


def test_a_file_without_decimals_or_order_is_completed_from_the_chain(
    chain: tuple[Anvil, protocols.V2Pair, str, str], tmp_path: Path
) -> None:
    anvil, v2, feed, weth = chain
    pair, weth_is = v2.address, "token0" if v2.token0 == weth else "token1"
    path = tmp_path / "prices.toml"
    sources.write(path, [
        pair_source(pair),
        {"name": "eth-usd", "kind": "chainlink", "token": "ETH", "quote": "USD", "address": feed},
    ])  # fmt: skip
    done = run([CHAINPULSE, "prices", "check", str(path)], tmp_path, ETH_RPC_URL=anvil.url)
    assert done.returncode == 0, done.stderr
    assert "ok, checked against the chain" in done.stdout
    decimals = (
        "(decimals0 18, decimals1 6)" if weth_is == "token0" else "(decimals0 6, decimals1 18)"
    )
    assert f"weth-usdc: WETH is {weth_is} {decimals}" in done.stdout
    assert "eth-usd: ETH in USD, 8 decimals" in done.stdout

    # price_of by address works the same; by a symbol the pool does not hold, it names both
    sources.write(path, [pair_source(pair, token="W", price_of=weth)])
    assert (
        run([CHAINPULSE, "prices", "check", str(path)], tmp_path, ETH_RPC_URL=anvil.url).returncode
        == 0
    )
    sources.write(path, [pair_source(pair, price_of="WBTC")])
    done = run([CHAINPULSE, "prices", "check", str(path)], tmp_path, ETH_RPC_URL=anvil.url)
    assert done.returncode == 2
    assert (
        "field 'price_of': 'WBTC' is not exactly one of the pool's tokens: token0 0x" in done.stderr
    )


def test_a_file_the_chain_contradicts_is_refused_at_start(
    chain: tuple[Anvil, protocols.V2Pair, str, str], tmp_path: Path, redis_url: str
) -> None:
    anvil, v2, _, weth = chain
    pair, weth_is = v2.address, "token0" if v2.token0 == weth else "token1"
    # WETH's decimals swapped with USDC's and its base flipped: 3.0e45 instead of 3.3e-22
    wrong = {"token0": "token1", "token1": "token0"}[weth_is]
    d0, d1 = (6, 18) if weth_is == "token0" else (18, 6)
    path = tmp_path / "prices.toml"
    sources.write(path, [pair_source(pair, base=wrong, decimals0=d0, decimals1=d1)])
    expected = (
        f"chainpulse: PRICE_SOURCES {path}: source 1 ('weth-usdc'): field 'decimals0': the file "
        f"says {d0}, the chain says {d1} (decimals() of token0 0x"
    )
    done = run([CHAINPULSE, "prices", "check", str(path)], tmp_path, ETH_RPC_URL=anvil.url)
    assert done.returncode == 2 and done.stderr.startswith(expected), done.stderr
    worker = run([CELERY, "-A", "workers", "worker", "-Q", "blocks"], ROOT,
                 PRICE_SOURCES=str(path), ETH_RPC_URL=anvil.url, REDIS_URL=redis_url,
                 DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")  # fmt: skip
    assert worker.returncode == 2
    assert any(line.startswith(expected) for line in worker.stderr.splitlines()), worker.stderr[
        -2000:
    ]

    # only the base flipped: the room's name is the symbol of the other token
    sources.write(path, [pair_source(pair, base=wrong)])
    done = run([CHAINPULSE, "prices", "check", str(path)], tmp_path, ETH_RPC_URL=anvil.url)
    assert done.returncode == 2
    assert f"field 'base': the file says '{wrong}', the chain says WETH is {weth_is}" in done.stderr


def test_with_chains_a_file_is_checked_against_its_own_chains_node(
    chain: tuple[Anvil, protocols.V2Pair, str, str], tmp_path: Path
) -> None:
    """The pair lives on the second chain of the file: `prices check` of that chain's
    `prices` file asks its node, not the primary's (where the pair does not exist)."""
    anvil, v2, _, _ = chain
    path = tmp_path / "prices.toml"
    sources.write(path, [pair_source(v2.address)])
    with Anvil(chain_id=anvil.chain_id + 1) as empty:
        chains = tmp_path / "chains.toml"
        chains.write_text(
            f'[[chain]]\nname = "one"\nchain_id = {empty.chain_id}\nrpc = "{empty.url}"\n\n'
            f'[[chain]]\nname = "two"\nchain_id = {anvil.chain_id}\nrpc = "{anvil.url}"\n'
            'prices = "prices.toml"\n'
        )
        done = run([CHAINPULSE, "prices", "check", str(path)], tmp_path, CHAINS=str(chains))
        assert done.returncode == 0, done.stderr
        assert f"ok, checked against the chain at {anvil.url}" in done.stdout
        named = run(
            [CHAINPULSE, "prices", "check", str(path), "--chain", "one"],
            tmp_path,
            CHAINS=str(chains),
        )
        assert named.returncode == 2 and "weth-usdc" in named.stderr, named.stderr
