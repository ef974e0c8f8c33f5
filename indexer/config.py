"""Settings: each declared once, with its variable, type, default and meaning.

A part of chainpulse declares the settings it uses as fields of a frozen dataclass,
built on `IndexerSettings` (the chain, the database and the event stream, which every
process needs): `workers.config`, `follower.config`, `realtime.config`. The command
line composes them into one `chainpulse.settings.Settings`. Library code never reads
`os.environ`; entry points call `from_env()` once and pass the result down. Tests build
settings with their own values.

A field is a setting when it is declared with `setting(...)`: its metadata names the
environment variable and its meaning, which docs/configuration.md's table repeats
(a test holds the two together).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Self

from indexer.chains import ChainEntry, ChainsFile, load_chains
from indexer.contracts import Contract, ContractsFile, load_contracts
from indexer.errors import ConfigError
from indexer.loglines import log_format, log_level
from indexer.sources import PriceSources, load_sources

STREAM_KEY = "chainpulse:events"  # the primary chain's; another's is `<key>:<chainId>`
MAIN = "main"  # the name of the one chain of a deployment without a chains file
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def setting(
    env: str,
    default: Any,
    meaning: str,
    *,
    minimum: float | None = None,
    shown: str | None = None,
    convert: Callable[[str], Any] | None = None,
) -> Any:
    """A dataclass field read from the variable `env`.

    `minimum`: the lowest accepted value (numbers; floats must otherwise be positive,
    whole numbers at least 0). `shown`: the default as docs/configuration.md states it, when it is
    not the value itself (e.g. "CPU count + 1"). `convert`: turns the raw text into the
    value, for the few settings that are not plain numbers, words or lists.
    """
    return dataclasses.field(
        default=default,
        metadata={
            "env": env,
            "meaning": meaning,
            "minimum": minimum,
            "shown": shown,
            "convert": convert,
        },
    )


@dataclass(frozen=True)
class Declared:
    """One setting as declared: what docs/configuration.md's table lists."""

    env: str
    attr: str
    default: str  # as docs/configuration.md shows it
    meaning: str


@dataclass(frozen=True)
class IndexerSettings:
    """The chain, the database and the event stream: what every process reads."""

    rpc_urls: tuple[str, ...] = setting(
        "ETH_RPC_URL",
        ("http://127.0.0.1:8545",),
        "JSON-RPC HTTP endpoint; a comma-separated list fails over in order",
    )
    ws_url: str | None = setting(
        "ETH_WS_URL", None, "websocket endpoint; the follower then uses `newHeads`"
    )
    confirmations: int = setting("CONFIRMATIONS", 0, "how far behind the head the follower indexes")
    start_block: int | None = setting(
        "START_BLOCK",
        None,
        "where the follower starts on an empty database",
        shown="the head at first start",
    )
    poll_interval: float = setting(
        "POLL_INTERVAL", 1.0, "seconds between `eth_blockNumber` polls (works down to 0.1)"
    )
    chains_file: ChainsFile | None = setting(
        "CHAINS",
        None,
        "TOML file of the chains to index, one `[[chain]]` each, the first the primary; "
        "unset: the one chain of `ETH_RPC_URL`",
        convert=load_chains,
    )
    rpc_timeout: float = setting("ETH_RPC_TIMEOUT", 10.0, "seconds per JSON-RPC request")
    database_url: str = setting(
        "DATABASE_URL", "sqlite:///chainpulse.db", "SQLAlchemy URL; PostgreSQL in production"
    )
    redis_url: str = setting(
        "REDIS_URL",
        "redis://127.0.0.1:6379/0",
        "Celery broker, event stream, Socket.IO message queue",
    )
    stream_maxlen: int = setting(
        "STREAM_MAXLEN", 100_000, "entries kept in the event stream (approximate trim)", minimum=1
    )
    max_reorg_depth: int = setting(
        "MAX_REORG_DEPTH",
        64,
        "deepest reorg repaired automatically; deeper stops indexing",
        minimum=1,
    )
    finality_depth: int = setting(
        "FINALITY_DEPTH",
        64,
        "on a node without the `safe` and `finalized` block tags: how far below the head "
        "a block counts as safe and final",
        minimum=1,
    )
    # 25 blocks are 50 calls in one JSON-RPC batch, below the 100 that hosted nodes
    # commonly allow.
    backfill_batch: int = setting(
        "BACKFILL_BATCH", 25, "heights per backfill job (one JSON-RPC batch each)", minimum=1
    )
    rpc_rate_limit: float | None = setting(
        "RPC_RATE_LIMIT",
        None,
        "JSON-RPC calls per second for the whole deployment (each call of a batch counts), "
        "shared through Redis by every process that calls the node; unset: no limit",
    )
    price_sources: PriceSources | None = setting(
        "PRICE_SOURCES",
        None,
        "TOML (or JSON) file of on-chain price sources; checked at start",
        convert=load_sources,
    )
    contracts_file: ContractsFile | None = setting(
        "CONTRACTS",
        None,
        "TOML file of the contracts whose events are decoded, one `[[contract]]` each "
        "(docs/contracts.md); unset: none",
        convert=load_contracts,
    )
    log_format: str = setting(
        "LOG_FORMAT", "text", "`text`, or `json`: one JSON object per line", convert=log_format
    )
    log_level: str = setting(
        "LOG_LEVEL", "info", "`debug`, `info`, `warning` or `error`", convert=log_level
    )
    stream_key: str = STREAM_KEY  # not a setting: the stream's name is the contract
    # Not settings either: the chain these settings are for (`chains()` gives one view
    # per chain). Without a chains file: the one chain of ETH_RPC_URL, "main", whose id
    # the node tells.
    chain_name: str = MAIN
    chain_id: int | None = None
    primary_chain_id: int | None = None
    rate_budget: str | None = None

    def __post_init__(self) -> None:
        """Checks across settings; each part adds its own and calls this one."""
        if self.chains_file is not None and self.chain_id is None:
            self._check_chains()
        if self.contracts_file is not None and self.chain_id is None:
            self._check_contracts()

    @property
    def contracts(self) -> tuple[Contract, ...]:
        """The contracts of the chain these settings are for (the primary's include
        those that name no chain)."""
        if self.contracts_file is None:
            return ()
        return self.contracts_file.on_chain(self.chain_name, self.is_primary)

    def _check_contracts(self) -> None:
        """Every contract's `chain` names a chain of the deployment."""
        assert self.contracts_file is not None
        names = [v.chain_name for v in self.chains()]
        where = f"CONTRACTS {self.contracts_file.path}"
        owners: dict[tuple[str, str], Contract] = {}  # (chain, address) -> its contract
        for contract in self.contracts_file.contracts:
            if contract.chain is not None and contract.chain not in names:
                raise ConfigError(
                    f"{where}: {contract.label}: field 'chain': "
                    f"no chain named {contract.chain!r} (chains: {', '.join(names)})"
                )
            chain = contract.chain or names[0]  # no chain: the primary
            for address in contract.addresses:
                other = owners.setdefault((chain, address), contract)
                if other is not contract:
                    raise ConfigError(
                        f"{where}: {contract.label}: field 'address': {address} is "
                        f"{other.label}'s already on chain {chain} (a log is decoded as one "
                        "contract's)"
                    )

    @property
    def is_primary(self) -> bool:
        """Whether these settings are for the primary chain (the first of the file)."""
        return self.chain_id is None or self.chain_id == self.primary_chain_id

    def chain_key(self, base: str) -> str:
        """`base` for the primary chain (today's Redis keys stay as they are), and
        `base:<chainId>` for another chain."""
        return base if self.is_primary else f"{base}:{self.chain_id}"

    def chains(self) -> tuple[Self, ...]:
        """One view of these settings per chain indexed, the primary first: each with
        the chain's node, stream, follower settings and price sources, its omitted
        fields taken from the single-chain settings."""
        if self.chains_file is None or self.chain_id is not None:
            return (self,)
        primary = self.chains_file.primary.chain_id
        return tuple(self._view(entry, primary) for entry in self.chains_file.entries)

    def chain(self, name: str) -> Self:
        """The view of the chain called `name` (ConfigError naming the known ones)."""
        views = self.chains()
        for view in views:
            if view.chain_name == name:
                return view
        known = ", ".join(v.chain_name for v in views)
        raise ConfigError(f"no chain named {name!r} (chains: {known})")

    def _view(self, entry: ChainEntry, primary: int) -> Self:
        def given(value: Any, default: Any) -> Any:
            return default if value is None else value

        view = replace(
            self,
            chain_name=entry.name,
            chain_id=entry.chain_id,
            primary_chain_id=primary,
            rpc_urls=entry.rpc,
            ws_url=entry.ws,
            start_block=given(entry.start_block, self.start_block),
            confirmations=given(entry.confirmations, self.confirmations),
            max_reorg_depth=given(entry.max_reorg_depth, self.max_reorg_depth),
            finality_depth=given(entry.finality_depth, self.finality_depth),
            poll_interval=given(entry.poll_interval, self.poll_interval),
            rpc_rate_limit=given(entry.rate_limit, self.rpc_rate_limit),
            rate_budget=entry.rate_budget,
            price_sources=given(entry.prices, self.price_sources),
        )
        return replace(view, stream_key=view.chain_key(STREAM_KEY))

    def _check_chains(self) -> None:
        """Across the file's chains: one chain per price token, one quota per budget."""
        assert self.chains_file is not None
        where = f"CHAINS {self.chains_file}"
        if self.price_sources is not None:
            bare = [e.name for e in self.chains_file.entries if e.prices is None]
            if len(bare) > 1:
                raise ConfigError(
                    f"{where}: PRICE_SOURCES is the default of chains {', '.join(bare)} "
                    "(none names `prices`); a token is priced on one chain: give each "
                    "chain its own `prices`, or unset PRICE_SOURCES"
                )
            owners = {
                s.token: e.name
                for e in self.chains_file.entries
                if e.prices is not None
                for s in e.prices.sources
            }
            for source in self.price_sources.sources if bare else ():
                if source.token in owners:
                    raise ConfigError(
                        f"{where}: token {source.token!r} of PRICE_SOURCES (chain "
                        f"{bare[0]}) is chain {owners[source.token]}'s already"
                    )
        quotas: dict[str, tuple[str, float | None]] = {}
        for view in self.chains():
            if view.rate_budget is None:
                continue
            name, limit = quotas.setdefault(
                view.rate_budget, (view.chain_name, view.rpc_rate_limit)
            )
            if limit != view.rpc_rate_limit:
                raise ConfigError(
                    f"{where}: chains {name} and {view.chain_name} share the budget "
                    f"{view.rate_budget!r} with different rate limits ({limit} and "
                    f"{view.rpc_rate_limit}): a budget is one provider's quota"
                )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, dotenv: bool = True) -> Self:
        """Settings from `env` (default: the process environment over `./.env`).

        Raises ConfigError naming the variable when a value is malformed.
        """
        if env is None:
            env = dict(os.environ)
            if dotenv:
                from dotenv import dotenv_values

                from_file = {k: v for k, v in dotenv_values(".env").items() if v is not None}
                env = {**from_file, **env}
        values = {}
        for item, field in _fields(cls):
            raw = env.get(item.env, "").strip()
            if raw:
                values[item.attr] = _parse(item.env, raw, field)
        if "chains_file" in values:
            for attr, env_name in (("rpc_urls", "ETH_RPC_URL"), ("ws_url", "ETH_WS_URL")):
                if attr in values:
                    raise ConfigError(
                        f"CHAINS and {env_name} are both set: with a chains file each chain "
                        f"names its own endpoints (`rpc`, `ws`); unset {env_name}"
                    )
        return cls(**values)

    @classmethod
    def declared(cls) -> list[Declared]:
        """Every setting of this class, in declaration order."""
        return [item for item, _ in _fields(cls)]

    def with_(self, **changes: Any) -> Self:
        return replace(self, **changes)


def _fields(cls: type) -> Iterator[tuple[Declared, dataclasses.Field[Any]]]:
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if "env" in meta:
            shown = meta["shown"] if meta["shown"] is not None else _show(field.default)
            yield Declared(meta["env"], field.name, shown, meta["meaning"]), field


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _kind(field: dataclasses.Field[Any]) -> type:
    """The field's value type, without `| None`."""
    hint: Any = field.type
    if isinstance(hint, str):
        hint = eval(hint, vars(typing), {})  # noqa: S307 - our own annotations
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def _parse(name: str, raw: str, field: dataclasses.Field[Any]) -> Any:
    meta = field.metadata
    if meta["convert"] is not None:
        return meta["convert"](raw)
    kind = _kind(field)
    minimum = meta["minimum"]
    if kind is bool:
        word = raw.lower()
        if word not in _TRUE + _FALSE:
            raise ConfigError(f"{name} must be true or false, got {raw!r}")
        return word in _TRUE
    if kind is tuple:
        items = tuple(part.strip() for part in raw.split(",") if part.strip())
        if not items:
            raise ConfigError(f"{name} is set but lists nothing")
        return items
    if kind is int:
        try:
            number: float = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
        lowest = minimum if minimum is not None else 0
        if number < lowest:
            raise ConfigError(f"{name} must be at least {lowest:g}, got {raw}")
        return number
    if kind is float:
        try:
            number = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"{name} must be a finite number, got {raw!r}")
        if minimum is not None and number < minimum:
            raise ConfigError(f"{name} must be at least {minimum:g}, got {raw}")
        if minimum is None and number <= 0:
            raise ConfigError(f"{name} must be positive, got {raw}")
        return number
    return raw
