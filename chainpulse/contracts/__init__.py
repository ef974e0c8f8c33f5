"""The test contracts: a Uniswap-V2-style pair, a V3-style pool, a Chainlink-style feed
and a minimal ERC-20, written in Solidity beside this file and compiled with the pinned solc-js into
`artifacts.json` (`make contracts`; a test checks the two agree).

`Contracts` deploys them on an anvil node and calls them from its unlocked accounts.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from chainpulse.devnet import Anvil


@cache
def artifacts() -> dict[str, Any]:
    text = resources.files(__name__).joinpath("artifacts.json").read_text(encoding="utf-8")
    return dict(json.loads(text)["contracts"])


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
        return {"from": self.sender, "data": data, "gas": hex(3_000_000)}

    def deploy(self, name: str, *args: Any) -> str:
        """Deploy contract `name` with constructor `args`, mined at once; its address."""
        tx = self.anvil.call("eth_sendTransaction", self.deployment(name, *args))
        receipt = self._mined(tx)
        address = str(receipt["contractAddress"]).lower()
        self.kinds[address] = name
        return address

    def transaction(self, address: str, function: str, *args: Any) -> dict[str, str]:
        """The `eth_sendTransaction` parameters that call `function(args)` at `address`."""
        abi = artifacts()[self.kinds[address]]["abi"]
        types = _types(abi, "function", function)
        selector = function_signature_to_4byte_selector(f"{function}({','.join(types)})")
        data = "0x" + selector.hex() + encode(types, list(args)).hex()
        return {"from": self.sender, "to": address, "data": data, "gas": hex(500_000)}

    def send(self, address: str, function: str, *args: Any) -> str:
        """Call `function(args)` at `address` in a transaction; its hash (mined when the
        node automines)."""
        tx = self.transaction(address, function, *args)
        return str(self.anvil.call("eth_sendTransaction", tx))

    def call(self, address: str, function: str, *args: Any) -> dict[str, Any]:
        """`send`, waiting for the receipt; raises when the transaction reverted."""
        receipt = self._mined(self.send(address, function, *args))
        if int(receipt["status"], 16) != 1:
            raise RuntimeError(f"{function} at {address} reverted")
        return receipt

    def _mined(self, tx: str) -> dict[str, Any]:
        receipt = self.anvil.call("eth_getTransactionReceipt", tx)
        if receipt is None:
            self.anvil.mine()
            receipt = self.anvil.call("eth_getTransactionReceipt", tx)
        return dict(receipt)
