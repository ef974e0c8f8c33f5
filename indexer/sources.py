"""The price sources file (contract: docs/prices.md).

`PRICE_SOURCES` names a TOML file (or JSON, by its `.json` suffix) with one `[[source]]`
table per source. Loading checks everything a worker would otherwise trip over later:
a bad file raises `SourcesError`, one line naming the file, the entry and the field, so
every process that reads it stops at start with that line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, cast

from indexer.config_files import read_document, top_tables
from indexer.errors import ConfigError

Kind = Literal["uniswap_v2", "uniswap_v3", "chainlink", "derived"]
KINDS: tuple[Kind, ...] = ("uniswap_v2", "uniswap_v3", "chainlink", "derived")
TOKEN = re.compile(r"^[A-Za-z0-9._-]{1,32}$")  # the channel rule of `price:<TOKEN>`
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
MAX_DECIMALS = 77  # 10**77 is the largest power of ten below 2**256

_COMMON = {"name", "kind", "token", "quote"}
_POOL = _COMMON | {"address", "price_of", "base", "decimals0", "decimals1"}
_FIELDS: dict[Kind, set[str]] = {
    "uniswap_v2": _POOL | {"min_liquidity"},
    "uniswap_v3": _POOL | {"min_liquidity"},
    "chainlink": _COMMON | {"address", "decimals", "max_age"},
    "derived": _COMMON | {"legs"},
}
# read from the chain when the file leaves them out (indexer.source_metadata), and
# checked against it when it gives them
_OPTIONAL = {"min_liquidity", "max_age", "price_of", "base", "decimals0", "decimals1", "decimals"}
MAX_AGE_LIMIT = 10 * 365 * 24 * 3600  # seconds: ten years


class SourcesError(ConfigError):
    """The price sources file cannot be used; the message names file, entry and field."""


@dataclass(frozen=True)
class Leg:
    """One factor of a derived price: another source's token, inverted when written 1/X."""

    token: str
    inverted: bool = False

    def __str__(self) -> str:
        return f"1/{self.token}" if self.inverted else self.token


Base = Literal["token0", "token1"]


@dataclass(frozen=True)
class Source:
    """One source as the file gives it. A pool's `base` and decimals and a feed's
    decimals are None until read from the chain (`resolved`)."""

    name: str
    kind: Kind
    token: str
    quote: str
    number: int = 0  # its place in the file, from 1, for messages
    address: str | None = None  # lowercase; pools and feeds
    price_of: str | None = None  # pools: which token is priced, by address or symbol
    base: Base | None = None  # pools
    decimals0: int | None = None  # pools
    decimals1: int | None = None
    decimals: int | None = None  # feeds
    legs: tuple[Leg, ...] = ()  # derived
    # pools: below it (the quote token's reserve, whole tokens) the price is stale
    min_liquidity: Decimal | None = None
    max_age: int | None = None  # feeds: seconds of chain time before an answer is stale
    # feeds on a proxy: (from block, aggregator) in ascending blocks, the first from 0;
    # empty when `address` is the aggregator itself (indexer.proxies)
    aggregators: tuple[tuple[int, str], ...] = ()

    def emitter_at(self, number: int) -> str | None:
        """The address whose logs price this source at block `number`."""
        found = self.address
        for start, aggregator in self.aggregators:
            if start > number:
                break
            found = aggregator
        return found

    @property
    def on_chain(self) -> bool:
        """Whether it decodes logs (a pool or a feed, not derived)."""
        return self.address is not None

    @property
    def resolved(self) -> bool:
        """Whether everything its decoding needs is known."""
        if self.kind == "chainlink":
            return self.decimals is not None
        if self.kind == "derived":
            return True
        return None not in (self.base, self.decimals0, self.decimals1)


@dataclass(frozen=True)
class PriceSources:
    """The sources of one file, checked, with the lookups the decoder needs."""

    path: str
    sources: tuple[Source, ...]
    by_token: Mapping[str, Source] = field(compare=False, repr=False)
    # for each token, the derived sources that depend on it (transitively), in an order
    # where every derived source comes after the derived sources it is built from
    dependents: Mapping[str, tuple[Source, ...]] = field(compare=False, repr=False)

    def owns(self, token: str) -> Source | None:
        """The chain source that publishes `token`, if any."""
        return self.by_token.get(token)

    @property
    def resolved(self) -> bool:
        return all(s.resolved for s in self.sources)

    def with_sources(self, sources: tuple[Source, ...]) -> PriceSources:
        """The same file with `sources` (the same names, in order) in place of its own:
        the sources once their metadata is read from the chain."""
        assert [s.name for s in sources] == [s.name for s in self.sources]
        by_token = {s.token: s for s in sources}
        dependents = {
            token: tuple(by_token[d.token] for d in derived)
            for token, derived in self.dependents.items()
        }
        return PriceSources(self.path, sources, by_token, dependents)

    def __str__(self) -> str:
        return self.path


def load_sources(path: str) -> PriceSources:
    """Read and check the file at `path`; raises SourcesError."""
    document = read_document(path, f"PRICE_SOURCES {path}", SourcesError, json_suffix=True)
    return parse_sources(document, path)


def parse_sources(document: Any, path: str) -> PriceSources:
    """Check a parsed file (`{"source": [...]}`); `path` names it in messages."""
    where = f"PRICE_SOURCES {path}"
    entries = top_tables(document, where, "source", SourcesError)
    sources: list[Source] = []
    names: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        source = _source(where, number, entry)
        if source.name in names:
            raise _bad(
                where, number, source.name, "name", f"also used by source {names[source.name]}"
            )
        if source.token in tokens:
            raise _bad(
                where,
                number,
                source.name,
                "token",
                f"{source.token!r} already has source {tokens[source.token]}: one source per token",
            )
        names[source.name] = number
        tokens[source.token] = number
        sources.append(source)
    by_token = {s.token: s for s in sources}
    order = _derived_order(where, sources, by_token, tokens)
    return PriceSources(path, tuple(sources), by_token, _dependents(sources, order))


def bad_field(sources: PriceSources, source: Source, key: str, problem: str) -> SourcesError:
    """The error that names `source`'s `key` in `sources`' file."""
    return _bad(f"PRICE_SOURCES {sources.path}", source.number, source.name, key, problem)


def _bad(where: str, number: int, name: str | None, key: str, problem: str) -> SourcesError:
    label = f"source {number}" + (f" ({name!r})" if name else "")
    return SourcesError(f"{where}: {label}: field {key!r}: {problem}")


def _source(where: str, number: int, entry: Any) -> Source:
    if not isinstance(entry, dict):
        raise SourcesError(
            f"{where}: source {number}: expected a table, got {type(entry).__name__}"
        )
    raw_name = entry.get("name")
    name = raw_name if isinstance(raw_name, str) and raw_name.strip() else None

    def bad(key: str, problem: str) -> SourcesError:
        return _bad(where, number, name, key, problem)

    if name is None:
        raise bad("name", "missing" if raw_name is None else "must be a non-empty string")
    if len(name) > 64:
        raise bad("name", "at most 64 characters")
    kind = entry.get("kind")
    if kind is None:
        raise bad("kind", "missing")
    if kind not in KINDS:
        raise bad("kind", f"unknown kind {kind!r} (expected {', '.join(KINDS)})")
    kind = cast(Kind, kind)
    allowed = _FIELDS[kind]
    for key in entry:
        if key not in allowed:
            raise bad(key, f"not a field of a {kind} source")
    for key in sorted(allowed - _OPTIONAL):
        if key not in entry:
            raise bad(key, "missing")
    token = _word(entry["token"], lambda p: bad("token", p))
    quote = _word(entry["quote"], lambda p: bad("quote", p))
    values: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "token": token,
        "quote": quote,
        "number": number,
    }
    if "address" in allowed:
        address = entry["address"]
        if not isinstance(address, str) or not ADDRESS.match(address):
            raise bad("address", f"expected 0x and 40 hex digits, got {address!r}")
        values["address"] = address.lower()
    if "price_of" in entry:
        price_of = entry["price_of"]
        if not isinstance(price_of, str) or not (ADDRESS.match(price_of) or TOKEN.match(price_of)):
            raise bad("price_of", f"expected a token's address or symbol, got {price_of!r}")
        values["price_of"] = price_of.lower() if ADDRESS.match(price_of) else price_of
    if "base" in entry:
        if entry["base"] not in ("token0", "token1"):
            raise bad("base", f"expected token0 or token1, got {entry['base']!r}")
        values["base"] = entry["base"]
    for key in ("decimals0", "decimals1", "decimals"):
        if key in entry:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(key, f"expected a whole number, got {value!r}")
            if not 0 <= value <= MAX_DECIMALS:
                raise bad(key, f"expected 0 to {MAX_DECIMALS}, got {value}")
            values[key] = value
    if "min_liquidity" in entry:
        values["min_liquidity"] = _amount(entry["min_liquidity"], lambda p: bad("min_liquidity", p))
    if "max_age" in entry:
        max_age = entry["max_age"]
        if isinstance(max_age, bool) or not isinstance(max_age, int):
            raise bad("max_age", f"expected whole seconds, got {max_age!r}")
        if not 1 <= max_age <= MAX_AGE_LIMIT:
            raise bad("max_age", f"expected 1 to {MAX_AGE_LIMIT} seconds, got {max_age}")
        values["max_age"] = max_age
    if kind == "derived":
        values["legs"] = _legs(entry["legs"], token, lambda p: bad("legs", p))
    return Source(**values)


def _word(value: Any, bad: Any) -> str:
    if not isinstance(value, str) or not TOKEN.match(value):
        raise bad(f"expected 1 to 32 of A-Z a-z 0-9 . _ -, got {value!r}")
    return value


def _amount(value: Any, bad: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad(f"expected a number, got {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise bad(f"expected a number, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise bad(f"expected a finite number of at least 0, got {value!r}")
    return amount


def _legs(value: Any, own: str, bad: Any) -> tuple[Leg, ...]:
    if not isinstance(value, list) or not value:
        raise bad("expected a non-empty list of tokens")
    legs = []
    for item in value:
        if not isinstance(item, str):
            raise bad(f"expected tokens as strings, got {item!r}")
        text = item.strip()
        inverted = text.startswith("1/")
        token = text[2:].strip() if inverted else text
        if not TOKEN.match(token):
            raise bad(f"{item!r} is not a token (or 1/token)")
        if token == own:
            raise bad(f"{item!r} names this source's own token")
        legs.append(Leg(token, inverted))
    return tuple(legs)


def _derived_order(
    where: str, sources: list[Source], by_token: Mapping[str, Source], numbers: Mapping[str, int]
) -> list[Source]:
    """Derived sources ordered so that each follows those it is built from; refuses a
    leg that names no source and a cycle."""
    for source in sources:
        for leg in source.legs:
            if leg.token not in by_token:
                raise _bad(
                    where,
                    numbers[source.token],
                    source.name,
                    "legs",
                    f"{str(leg)!r} names no source's token",
                )
    order: list[Source] = []
    state: dict[str, str] = {}  # token -> "visiting" | "done"

    def visit(source: Source, path: list[str]) -> None:
        if state.get(source.token) == "done":
            return
        if state.get(source.token) == "visiting":
            cycle = " -> ".join([*path[path.index(source.token) :], source.token])
            raise _bad(where, numbers[source.token], source.name, "legs", f"a cycle: {cycle}")
        state[source.token] = "visiting"
        for leg in source.legs:
            visit(by_token[leg.token], [*path, source.token])
        state[source.token] = "done"
        if source.kind == "derived":
            order.append(source)

    for source in sources:
        visit(source, [])
    return order


def _dependents(sources: list[Source], order: list[Source]) -> dict[str, tuple[Source, ...]]:
    uses: dict[str, set[str]] = {s.token: set() for s in sources}  # token -> derived using it
    for derived in order:
        for leg in derived.legs:
            uses[leg.token].add(derived.token)

    def closure(token: str) -> set[str]:
        found: set[str] = set()
        todo = [token]
        while todo:
            for user in uses[todo.pop()]:
                if user not in found:
                    found.add(user)
                    todo.append(user)
        return found

    result = {}
    for source in sources:
        reached = closure(source.token)
        result[source.token] = tuple(d for d in order if d.token in reached)
    return result
