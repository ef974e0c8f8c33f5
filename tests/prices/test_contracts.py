"""The contracts: the committed artifacts are what the pinned solc-js compiles the
sources to, the real protocols' npm artifacts are installed, and both emit the events
the price decoder reads."""

from __future__ import annotations

import json
import subprocess

from eth_utils import keccak

from chainpulse.contracts import artifacts
from indexer.price_decoding import ANSWER_UPDATED, INITIALIZE_V3, SWAP_V3, SYNC
from tests.harness.environment import ROOT


def test_the_artifacts_match_the_sources() -> None:
    done = subprocess.run(
        ["node", str(ROOT / "chainpulse/contracts/build.js"), "--check"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["solc"]
    compiled = json.loads((ROOT / "chainpulse/contracts/artifacts.json").read_text())
    assert compiled["compiler"].startswith(pinned + "+")


def topics(name: str) -> set[str]:
    found = set()
    for item in artifacts()[name]["abi"]:
        if item["type"] == "event":
            types = ",".join(arg["type"] for arg in item["inputs"])
            found.add("0x" + keccak(text=f"{item['name']}({types})").hex())
    return found


def test_the_contracts_emit_what_the_decoder_reads() -> None:
    assert topics("TestPair") == {SYNC}
    assert topics("TestPool") == {INITIALIZE_V3, SWAP_V3}
    assert topics("TestFeed") == {ANSWER_UPDATED}
    assert topics("TestToken") == {"0x" + keccak(text="Transfer(address,address,uint256)").hex()}


def test_the_real_protocols_emit_what_the_decoder_reads() -> None:
    assert SYNC in topics("UniswapV2Pair")
    assert {INITIALIZE_V3, SWAP_V3} <= topics("UniswapV3Pool")
    assert ANSWER_UPDATED in topics("FluxAggregator")
    for name in ("UniswapV2Factory", "UniswapV3Factory", "EACAggregatorProxy"):
        assert artifacts()[name]["bytecode"].startswith("0x60"), name  # creation code


def test_the_real_protocols_are_pinned() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]
    for package, version in {
        "@uniswap/v2-core": "1.0.1",
        "@uniswap/v3-core": "1.0.1",
        "@chainlink/contracts": "0.1.9",
    }.items():
        assert pinned[package] == version
        installed = json.loads((ROOT / "node_modules" / package / "package.json").read_text())
        assert installed["version"] == version
