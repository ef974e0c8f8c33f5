"""Price sources files as tests write them: entries as dicts, one TOML text from them.

`SAMPLE` is a file of every kind (a v2 pair, a v3 pool, a feed, derived prices, one of
them inverted) on made-up addresses, for the tests of the file itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Entry = Mapping[str, Any]

POOL = "0x" + "ab" * 20
FEED = "0x" + "Cd" * 20

SAMPLE: list[Entry] = [
    {"name": "weth-usdc", "kind": "uniswap_v2", "token": "WETH", "quote": "USDC",
     "address": POOL, "base": "token0", "decimals0": 18, "decimals1": 6,
     "min_liquidity": 1000},
    {"name": "uni-v3", "kind": "uniswap_v3", "token": "UNI", "quote": "WETH",
     "address": POOL.replace("ab", "ac"), "base": "token1", "decimals0": 18,
     "decimals1": 18},
    {"name": "eth-usd", "kind": "chainlink", "token": "ETH", "quote": "USD",
     "address": FEED, "decimals": 8},
    {"name": "uni-usd", "kind": "derived", "token": "UNI-USD", "quote": "USD",
     "legs": ["UNI", "ETH"]},
    {"name": "usd-uni", "kind": "derived", "token": "USD-UNI", "quote": "UNI",
     "legs": ["1/UNI-USD"]},
]  # fmt: skip


def toml(entries: Sequence[Entry]) -> str:
    """The `[[source]]` tables of `entries`, in order (values as TOML writes them)."""
    tables = []
    for entry in entries:
        lines = ["[[source]]"] + [f"{key} = {_value(value)}" for key, value in entry.items()]
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"


def write(path: Path, entries: Sequence[Entry]) -> Path:
    path.write_text(toml(entries))
    return path


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # strings and lists of strings are the same in TOML
