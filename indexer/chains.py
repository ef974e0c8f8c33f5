"""The chains file (contract: docs/chains.md).

`CHAINS` names a TOML file with one `[[chain]]` table per chain a deployment indexes;
the first is the primary. Loading checks the file as a whole: a bad one raises
ChainsError, one line naming the file, the entry and the field, so that every process
stops at start with that line (and `chainpulse chains check` says the same).

A chain's omitted fields take the single-chain settings of the same meaning
(`indexer.config.IndexerSettings.chains` resolves them); the node's own chain id is
checked against `chain_id` where a process first talks to it (`check_node`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.config_files import read_document, top_tables
from indexer.errors import ConfigError
from indexer.sources import PriceSources, SourcesError, load_sources

if TYPE_CHECKING:
    from indexer.config import IndexerSettings
    from indexer.rpc import Node
    from indexer.store import Store

NAME = re.compile(r"^[a-z0-9-]{1,32}$")
URL = re.compile(r"^(https?|wss?)://\S+$")
REQUIRED = ("name", "chain_id", "rpc")
FIELDS = {
    "name",
    "chain_id",
    "rpc",
    "ws",
    "start_block",
    "confirmations",
    "max_reorg_depth",
    "finality_depth",
    "poll_interval",
    "rate_limit",
    "rate_budget",
    "prices",
}
MAX_CHAIN_ID = 2**53 - 1  # what JSON clients hold exactly (EIP-2294 bounds it lower)


class ChainsError(ConfigError):
    """The chains file cannot be used; the message names the file, entry and field."""


class ChainMismatchError(ChainsError):
    """A chain's node serves another chain than its entry says."""


@dataclass(frozen=True)
class ChainEntry:
    """One `[[chain]]` table as written: None where it leaves a field to the defaults."""

    name: str
    chain_id: int
    rpc: tuple[str, ...]
    number: int  # its place in the file, from 1
    ws: str | None = None
    start_block: int | None = None
    confirmations: int | None = None
    max_reorg_depth: int | None = None
    finality_depth: int | None = None
    poll_interval: float | None = None
    rate_limit: float | None = None
    rate_budget: str | None = None  # a provider budget several chains draw on
    prices: PriceSources | None = None


@dataclass(frozen=True)
class ChainsFile:
    path: str
    entries: tuple[ChainEntry, ...]

    def __str__(self) -> str:
        return self.path

    @property
    def primary(self) -> ChainEntry:
        return self.entries[0]


def load_chains(path: str) -> ChainsFile:
    """Read and check the file at `path`; raises ChainsError."""
    document = read_document(path, f"CHAINS {path}", ChainsError)
    return parse_chains(document, path, Path(path).expanduser().parent)


def parse_chains(document: Any, path: str, directory: Path = Path()) -> ChainsFile:
    """Check a parsed file (`{"chain": [...]}`); `path` names it in messages, and a
    chain's `prices` path is read relative to `directory` (the file's own)."""
    where = f"CHAINS {path}"
    tables = top_tables(document, where, "chain", ChainsError)
    entries: list[ChainEntry] = []
    for number, table in enumerate(tables, start=1):
        entry = _entry(table, number, where, directory)
        for other in entries:
            same = "name" if other.name == entry.name else None
            same = "chain_id" if other.chain_id == entry.chain_id else same
            if same is not None:
                raise ChainsError(
                    f"{where}: chain {number} ({entry.name}): field {same!r} repeats "
                    f"chain {other.number} ({other.name})'s"
                )
        entries.append(entry)
    _tokens_unique(entries, where)
    return ChainsFile(path, tuple(entries))


def _entry(table: Any, number: int, where: str, directory: Path) -> ChainEntry:
    if not isinstance(table, dict):
        raise ChainsError(f"{where}: chain {number}: expected a table")
    label = f"chain {number}"
    name = table.get("name")
    if isinstance(name, str) and NAME.match(name):
        label = f"chain {number} ({name})"
    here = f"{where}: {label}"
    for key in sorted(set(table) - FIELDS):
        raise ChainsError(f"{here}: unknown field {key!r} (known: {', '.join(sorted(FIELDS))})")
    for key in REQUIRED:
        if key not in table:
            raise ChainsError(f"{here}: field {key!r} is required")
    if not isinstance(name, str) or not NAME.match(name):
        raise ChainsError(f"{here}: field 'name' must be 1 to 32 of a-z 0-9 -, got {name!r}")
    chain_id = _whole(table["chain_id"], here, "chain_id", lowest=1)
    if chain_id > MAX_CHAIN_ID:
        raise ChainsError(f"{here}: field 'chain_id' must be at most 2^53 - 1, got {chain_id}")
    return ChainEntry(
        name=name,
        chain_id=chain_id,
        rpc=_urls(table["rpc"], here),
        number=number,
        ws=_url(table["ws"], here, "ws") if "ws" in table else None,
        start_block=_optional_whole(table, "start_block", here, lowest=0),
        confirmations=_optional_whole(table, "confirmations", here, lowest=0),
        max_reorg_depth=_optional_whole(table, "max_reorg_depth", here, lowest=1),
        finality_depth=_optional_whole(table, "finality_depth", here, lowest=1),
        poll_interval=_optional_positive(table, "poll_interval", here),
        rate_limit=_optional_positive(table, "rate_limit", here),
        rate_budget=_budget(table.get("rate_budget"), here),
        prices=_prices(table.get("prices"), here, directory),
    )


def _whole(value: Any, here: str, key: str, lowest: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ChainsError(f"{here}: field {key!r} must be a whole number, got {value!r}")
    if value < lowest:
        raise ChainsError(f"{here}: field {key!r} must be at least {lowest}, got {value}")
    return value


def _optional_whole(table: dict[str, Any], key: str, here: str, lowest: int) -> int | None:
    return _whole(table[key], here, key, lowest) if key in table else None


def _optional_positive(table: dict[str, Any], key: str, here: str) -> float | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ChainsError(f"{here}: field {key!r} must be a positive number, got {value!r}")
    if value == float("inf"):
        raise ChainsError(f"{here}: field {key!r} must be finite, got {value!r}")
    return float(value)


def _url(value: Any, here: str, key: str) -> str:
    if not isinstance(value, str) or not URL.match(value.strip()):
        raise ChainsError(
            f"{here}: field {key!r} must be an http(s):// or ws(s):// URL, got {value!r}"
        )
    return value.strip()


def _urls(value: Any, here: str) -> tuple[str, ...]:
    """`rpc`: one URL, or a list of them (failover in order)."""
    if isinstance(value, list):
        if not value:
            raise ChainsError(f"{here}: field 'rpc' lists no URL")
        return tuple(_url(item, here, "rpc") for item in value)
    return (_url(value, here, "rpc"),)


def _budget(value: Any, here: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not NAME.match(value):
        raise ChainsError(
            f"{here}: field 'rate_budget' must be 1 to 32 of a-z 0-9 -, got {value!r}"
        )
    return value


def _prices(value: Any, here: str, directory: Path) -> PriceSources | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ChainsError(f"{here}: field 'prices' must be a file path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = directory / path
    try:
        return load_sources(str(path))
    except SourcesError as exc:
        raise ChainsError(f"{here}: field 'prices': {exc}") from None


def _tokens_unique(entries: list[ChainEntry], where: str) -> None:
    """A token (a `price:<TOKEN>` room) and a source name belong to one chain."""
    owners: dict[tuple[str, str], ChainEntry] = {}
    for entry in entries:
        if entry.prices is None:
            continue
        for source in entry.prices.sources:
            for what, key in (("token", source.token), ("source", source.name)):
                other = owners.setdefault((what, key), entry)
                if other is not entry:
                    raise ChainsError(
                        f"{where}: chain {entry.number} ({entry.name}): field 'prices': "
                        f"{what} {key!r} is chain {other.number} ({other.name})'s already; "
                        "price tokens and source names are unique across the deployment"
                    )


def check_node(entry_name: str, expected: int, served: int, where: str = "CHAINS") -> None:
    """Refuse a node that serves another chain than its entry names."""
    if served != expected:
        raise ChainMismatchError(
            f"{where}: chain {entry_name!r}: chain_id is {expected}, but its node serves "
            f"chain {served}"
        )


def bind(store: Store, node: Node, view: IndexerSettings) -> int:
    """Bind `store` to `view`'s chain, as the node serves it: a chain of the file must
    be served by its node (ChainMismatchError), and the database must have the file's
    first chain as its primary (ChainMismatch); without a file, the node's chain is
    the primary. Returns the chain id."""
    served = node.chain_id()
    if view.chain_id is None:
        store.bind_chain(served)
        return served
    check_node(view.chain_name, view.chain_id, served, f"CHAINS {view.chains_file}")
    store.bind_chain(view.chain_id, primary=view.primary_chain_id)
    return view.chain_id
