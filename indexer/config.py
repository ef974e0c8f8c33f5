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

from indexer.errors import ConfigError
from indexer.loglines import log_format, log_level
from indexer.sources import PriceSources, load_sources

STREAM_KEY = "chainpulse:events"
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
    log_format: str = setting(
        "LOG_FORMAT", "text", "`text`, or `json`: one JSON object per line", convert=log_format
    )
    log_level: str = setting(
        "LOG_LEVEL", "info", "`debug`, `info`, `warning` or `error`", convert=log_level
    )
    stream_key: str = STREAM_KEY  # not a setting: the stream's name is the contract

    def __post_init__(self) -> None:
        """Checks across settings; each part adds its own and calls this one."""

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
