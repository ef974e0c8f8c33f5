"""The chains file: what it accepts, the one line it refuses a bad one with, and each
chain's settings as the processes see them."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainpulse.settings import Settings
from indexer.chains import ChainsError, load_chains
from indexer.config import STREAM_KEY
from indexer.errors import ConfigError

GOOD = """
[[chain]]
name = "mainnet"
chain_id = 1
rpc = ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]
ws = "ws://127.0.0.1:8545"
confirmations = 2

[[chain]]
name = "base"
chain_id = 8453
rpc = "http://127.0.0.1:9545"
poll_interval = 0.5
rate_limit = 25
"""

POOL = """
[[source]]
name = "{name}"
kind = "uniswap_v2"
token = "{token}"
quote = "USD"
address = "0x{address}"
base = "token0"
decimals0 = 18
decimals1 = 6
"""


def write(tmp_path: Path, text: str, name: str = "chains.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_good_file_gives_each_chain_its_settings(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    settings = Settings.from_env({"CHAINS": path, "POLL_INTERVAL": "2", "CONFIRMATIONS": "1"})
    mainnet, base = settings.chains()
    assert (mainnet.chain_name, mainnet.chain_id, base.chain_name, base.chain_id) == (
        "mainnet",
        1,
        "base",
        8453,
    )
    assert mainnet.is_primary and not base.is_primary
    assert mainnet.rpc_urls == ("http://127.0.0.1:8545", "http://127.0.0.1:8546")
    assert (mainnet.ws_url, base.ws_url) == ("ws://127.0.0.1:8545", None)
    # a field a chain omits is the single-chain setting of the same meaning
    assert (mainnet.confirmations, base.confirmations) == (2, 1)
    assert (mainnet.poll_interval, base.poll_interval) == (2.0, 0.5)
    assert (mainnet.rpc_rate_limit, base.rpc_rate_limit) == (None, 25.0)
    # the primary keeps every Redis key of before; another chain's carry its id
    assert (mainnet.stream_key, base.stream_key) == (STREAM_KEY, f"{STREAM_KEY}:8453")
    assert base.chain_key("chainpulse:follower:lock") == "chainpulse:follower:lock:8453"
    assert settings.chain("base") == base
    with pytest.raises(ConfigError, match="no chain named 'op' \\(chains: mainnet, base\\)"):
        settings.chain("op")


def test_without_a_file_the_one_chain_is_main() -> None:
    settings = Settings.from_env({"ETH_RPC_URL": "http://127.0.0.1:7545"})
    [main] = settings.chains()
    assert main is settings and main.chain_name == "main" and main.chain_id is None
    assert main.is_primary and main.stream_key == STREAM_KEY


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no [[chain]] tables"),
        ("chain = 5", "no [[chain]] tables"),
        ("[other]\nx = 1", "unknown top-level key 'other'"),
        ("[[chain]]\nname = 'a'\nchain_id = 1", "chain 1 (a): field 'rpc' is required"),
        (
            "[[chain]]\nname = 'a'\nchain_id = 1\nrpc = 'http://x'\nrcp = 'http://y'",
            "chain 1 (a): unknown field 'rcp'",
        ),
        ("[[chain]]\nname = 'A B'\nchain_id = 1\nrpc = 'http://x'", "field 'name' must be 1 to 32"),
        ("[[chain]]\nname = 'a'\nchain_id = 0\nrpc = 'http://x'", "'chain_id' must be at least 1"),
        ("[[chain]]\nname = 'a'\nchain_id = '1'\nrpc = 'http://x'", "'chain_id' must be a whole"),
        ("[[chain]]\nname = 'a'\nchain_id = 1\nrpc = 'x'", "'rpc' must be an http(s):// or ws"),
        ("[[chain]]\nname = 'a'\nchain_id = 1\nrpc = []", "field 'rpc' lists no URL"),
        (
            "[[chain]]\nname = 'a'\nchain_id = 1\nrpc = 'http://x'\npoll_interval = 0",
            "'poll_interval' must be a positive number",
        ),
        (
            "[[chain]]\nname = 'a'\nchain_id = 1\nrpc = 'http://x'\nconfirmations = -1",
            "'confirmations' must be at least 0",
        ),
        (
            "[[chain]]\nname = 'a'\nchain_id = 1\nrpc = 'http://x'\n"
            "[[chain]]\nname = 'a'\nchain_id = 2\nrpc = 'http://y'",
            "chain 2 (a): field 'name' repeats chain 1 (a)'s",
        ),
        (
            "[[chain]]\nname = 'a'\nchain_id = 1\nrpc = 'http://x'\n"
            "[[chain]]\nname = 'b'\nchain_id = 1\nrpc = 'http://y'",
            "chain 2 (b): field 'chain_id' repeats chain 1 (a)'s",
        ),
        (
            "[[chain]]\nname = 'a'\nchain_id = 1\nrpc = 'http://x'\nprices = 'nowhere.toml'",
            "chain 1 (a): field 'prices': PRICE_SOURCES",
        ),
        ("[[chain]\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_in_one_line_naming_the_entry_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ChainsError) as refused:
        load_chains(path)
    assert message in str(refused.value) and str(refused.value).startswith(f"CHAINS {path}")
    assert "\n" not in str(refused.value)
    # every process reads it through its settings, and stops with the same line
    with pytest.raises(ConfigError, match="CHAINS"):
        Settings.from_env({"CHAINS": path})


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ChainsError, match="cannot read it"):
        load_chains(str(tmp_path / "absent.toml"))


@pytest.mark.parametrize("variable", ["ETH_RPC_URL", "ETH_WS_URL"])
def test_endpoints_set_beside_a_chains_file_are_refused(tmp_path: Path, variable: str) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError, match=f"CHAINS and {variable} are both set"):
        Settings.from_env({"CHAINS": path, variable: "http://127.0.0.1:1"})


def test_a_price_token_belongs_to_one_chain(tmp_path: Path) -> None:
    write(tmp_path, POOL.format(name="weth-a", token="WETH", address="11" * 20), "a.toml")
    write(tmp_path, POOL.format(name="weth-b", token="WETH", address="22" * 20), "b.toml")
    text = (
        "[[chain]]\nname = 'a'\nchain_id = 1\nrpc = 'http://x'\nprices = 'a.toml'\n"
        "[[chain]]\nname = 'b'\nchain_id = 2\nrpc = 'http://y'\nprices = 'b.toml'\n"
    )
    with pytest.raises(ChainsError, match="token 'WETH' is chain 1 \\(a\\)'s already"):
        load_chains(write(tmp_path, text))
    # PRICE_SOURCES as the default of two chains would price its tokens on both
    both = "[[chain]]\nname = 'a'\nchain_id = 1\nrpc = 'http://x'\n" + (
        "[[chain]]\nname = 'b'\nchain_id = 2\nrpc = 'http://y'\n"
    )
    with pytest.raises(ConfigError, match="PRICE_SOURCES is the default of chains a, b"):
        Settings.from_env(
            {
                "CHAINS": write(tmp_path, both, "both.toml"),
                "PRICE_SOURCES": str(tmp_path / "a.toml"),
            }
        )


def test_chains_sharing_a_budget_share_its_quota(tmp_path: Path) -> None:
    text = (
        "[[chain]]\nname = 'a'\nchain_id = 1\nrpc = 'http://x'\nrate_budget = 'acme'\n"
        "rate_limit = 10\n"
        "[[chain]]\nname = 'b'\nchain_id = 2\nrpc = 'http://y'\nrate_budget = 'acme'\n"
        "rate_limit = 20\n"
    )
    with pytest.raises(ConfigError, match="share the budget 'acme' with different rate limits"):
        Settings.from_env({"CHAINS": write(tmp_path, text)})
