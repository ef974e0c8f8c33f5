"""The contracts the tests and the dev chain deploy.

- The real protocols, from their npm artifacts (pinned in package.json, read from
  node_modules): Uniswap V2's factory and pair, Uniswap V3's factory and pool, and
  Chainlink's FluxAggregator (which emits `AnswerUpdated`), EACAggregatorProxy and
  MockV3Aggregator (which do not).
- The project's own, written in Solidity beside this file and compiled with the pinned
  solc-js into `artifacts.json` (`make contracts`; a test checks the two agree): the
  ERC-20 `TestToken` (any decimals: no npm artifact has an ERC-20 of chosen decimals),
  `V3Callee` (pays a V3 pool's mint and swap callbacks), and the look-alike `TestPair`,
  `TestPool` and `TestFeed`, kept for what the real contracts cannot reach: a `Sync` or
  `Swap` with any values at all (reserves of 1 : 2^112-1 in one step, a sqrtPriceX96 of
  zero or past MAX_SQRT_RATIO, several updates of one pool in one transaction, a log
  too short for its event) and a feed answer that is negative.

`Contracts` deploys them on an anvil node and calls them from its unlocked accounts.
"""

from __future__ import annotations

import json
import time
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from chainpulse.devnet import ROOT, Anvil

# name -> the artifact file in node_modules that holds its ABI and creation bytecode
NPM_ARTIFACTS = {
    "UniswapV2Factory": "@uniswap/v2-core/build/UniswapV2Factory.json",
    "UniswapV2Pair": "@uniswap/v2-core/build/UniswapV2Pair.json",
    "UniswapV3Factory": "@uniswap/v3-core/artifacts/contracts/"
    "UniswapV3Factory.sol/UniswapV3Factory.json",
    "UniswapV3Pool": "@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json",
    "FluxAggregator": "@chainlink/contracts/abi/v0.6/FluxAggregator.json",
    "EACAggregatorProxy": "@chainlink/contracts/abi/v0.6/EACAggregatorProxy.json",
    "MockV3Aggregator": "@chainlink/contracts/abi/v0.6/MockV3Aggregator.json",
}


@cache
def artifacts() -> dict[str, Any]:
    """Every contract by name: `{"abi": [...], "bytecode": "0x..."}`."""
    text = resources.files(__name__).joinpath("artifacts.json").read_text(encoding="utf-8")
    found = dict(json.loads(text)["contracts"])
    for name, relative in NPM_ARTIFACTS.items():
        found[name] = _npm_artifact(ROOT / "node_modules" / relative)
    return found


def _npm_artifact(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise FileNotFoundError(
            f"{path} is missing: `make deps` installs the npm packages (package.json)"
        ) from None
    if "compilerOutput" in document:  # @chainlink/contracts: solc's standard output
        output = document["compilerOutput"]
        abi, bytecode = output["abi"], output["evm"]["bytecode"]["object"]
    else:  # Uniswap: waffle (v2) and hardhat (v3) artifacts
        abi, bytecode = document["abi"], document["bytecode"]
    return {"abi": abi, "bytecode": bytecode if bytecode.startswith("0x") else "0x" + bytecode}


def _types(abi: list[dict[str, Any]], kind: str, name: str | None = None) -> list[str]:
    for item in abi:
        if item["type"] == kind and (name is None or item.get("name") == name):
            return [arg["type"] for arg in item["inputs"]]
    raise KeyError(f"no {kind} {name or ''} in the ABI")


class Contracts:
    """Deploy and call the test contracts on `anvil`, from its first account."""

    def __init__(self, anvil: Anvil, sender: str | None = None) -> None:
        self.anvil = anvil
        self.sender = sender or anvil.accounts()[0]
        self.kinds: dict[str, str] = {}  # address -> contract name

    def deployment(self, name: str, *args: Any) -> dict[str, str]:
        """The `eth_sendTransaction` parameters that deploy `name` with `args`."""
        spec = artifacts()[name]
        data = spec["bytecode"]
        if args:
            data += encode(_types(spec["abi"], "constructor"), list(args)).hex()
        return {"from": self.sender, "data": data, "gas": hex(12_000_000)}

    def deploy(self, name: str, *args: Any) -> str:
        """Deploy contract `name` with constructor `args`, mined at once; its address."""
        tx = self.anvil.call("eth_sendTransaction", self.deployment(name, *args))
        receipt = self._mined(tx)
        address = str(receipt["contractAddress"]).lower()
        self.kinds[address] = name
        return address

    def transaction(
        self, address: str, function: str, *args: Any, gas: int = 1_000_000
    ) -> dict[str, str]:
        """The `eth_sendTransaction` parameters that call `function(args)` at `address`."""
        abi = artifacts()[self.kinds[address]]["abi"]
        types = _types(abi, "function", function)
        selector = function_signature_to_4byte_selector(f"{function}({','.join(types)})")
        data = "0x" + selector.hex() + encode(types, list(args)).hex()
        return {"from": self.sender, "to": address, "data": data, "gas": hex(gas)}

    def send(self, address: str, function: str, *args: Any) -> str:
        """Call `function(args)` at `address` in a transaction; its hash (mined when the
        node automines)."""
        tx = self.transaction(address, function, *args)
        return str(self.anvil.call("eth_sendTransaction", tx))

    def call(self, address: str, function: str, *args: Any, gas: int = 1_000_000) -> dict[str, Any]:
        """`send`, waiting for the receipt; raises when the transaction reverted."""
        return self.execute(self.transaction(address, function, *args, gas=gas))

    def execute(self, tx: dict[str, str]) -> dict[str, Any]:
        """Send `tx` (from `transaction`) and wait for its receipt; raises when it
        reverted."""
        receipt = self._mined(str(self.anvil.call("eth_sendTransaction", tx)))
        if int(receipt["status"], 16) != 1:
            raise RuntimeError(
                f"the transaction {tx.get('data', '')[:10]} to {tx.get('to')} reverted"
            )
        return receipt

    def read(self, address: str, function: str, *args: Any, block: int | str = "latest") -> Any:
        """`function(args)` at `address` by `eth_call` on `block`, decoded: one value,
        or a tuple when the function returns several."""
        abi = artifacts()[self.kinds[address]]["abi"]
        outputs = next(
            [o["type"] for o in item["outputs"]]
            for item in abi
            if item["type"] == "function" and item["name"] == function
        )
        tag = hex(block) if isinstance(block, int) else block
        raw = self.anvil.call("eth_call", self.transaction(address, function, *args), tag)
        values = decode(outputs, bytes.fromhex(raw[2:]))
        return values[0] if len(values) == 1 else tuple(values)

    def at(self, address: str, name: str) -> str:
        """Call the contract at `address` (made by another contract) as `name`."""
        address = address.lower()
        self.kinds[address] = name
        return address

    def _mined(self, tx: str) -> dict[str, Any]:
        """The receipt of `tx`, once mined. A node that mines by itself (automine, or a
        block time) may answer the hash before the receipt: wait for it rather than
        mine a block of our own, which would add an empty block to the chain."""
        receipt = self.anvil.call("eth_getTransactionReceipt", tx)
        if receipt is None and not self.anvil.mines_itself:
            self.anvil.mine()
            receipt = self.anvil.call("eth_getTransactionReceipt", tx)
        deadline = time.monotonic() + 30
        while receipt is None and time.monotonic() < deadline:
            time.sleep(0.01)
            receipt = self.anvil.call("eth_getTransactionReceipt", tx)
        if receipt is None:
            raise RuntimeError(f"transaction {tx} was not mined within 30 s")
        return dict(receipt)
