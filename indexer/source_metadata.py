"""What the chain says about a price source: a pool's two tokens with their decimals and
symbols, a feed's decimals and description (docs/prices.md, "Metadata from the chain").

`read` asks the node (through its call budget); `resolve` is pure: it works out a
pool's `base` from `price_of` (an address or a symbol) and fills in the decimals, and
refuses a file whose explicit values the chain contradicts, naming the field, the
file's value and the chain's. `resolve_all` keeps what it read in the database
(`chainpulse_meta`), so a process that starts while the node is away prices with what
an earlier one read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector

from indexer.errors import RpcError
from indexer.rpc import Node
from indexer.sources import ADDRESS, PriceSources, Source, SourcesError, bad_field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Facts:
    """A pool's tokens (`token0`/`token1` set) or a feed's (`decimals` set)."""

    token0: str | None = None  # lowercase addresses
    token1: str | None = None
    decimals0: int | None = None
    decimals1: int | None = None
    symbol0: str | None = None
    symbol1: str | None = None
    decimals: int | None = None
    description: str | None = None
    # a feed's address is a proxy: the aggregator behind it when first read (None: the
    # address answers no `aggregator()`, it is the aggregator itself)
    aggregator: str | None = None

    def tokens(self) -> str:
        return f"token0 {self.token0} ({self.symbol0}), token1 {self.token1} ({self.symbol1})"


def _selector(signature: str) -> str:
    return "0x" + function_signature_to_4byte_selector(signature).hex()


def _calls(targets: list[tuple[str, str]]) -> list[tuple[str, tuple[Any, ...]]]:
    return [("eth_call", ({"to": to, "data": _selector(f)}, "latest")) for to, f in targets]


def _word_address(raw: str) -> str:
    return "0x" + raw[-40:].lower()


def _uint(raw: str) -> int:
    return int(raw, 16)


def _text(raw: str) -> str:
    """A `string` return, or a `bytes32` one (as some older ERC-20s have)."""
    data = bytes.fromhex(raw[2:])
    if len(data) == 32:
        return data.rstrip(b"\0").decode("utf-8", "replace")
    (value,) = decode(["string"], data)
    return str(value)


def read(node: Node, source: Source) -> Facts:
    """Ask the node. Raises SourcesError when the address is not such a contract (no
    code, or a call reverts) and NodeUnavailable/RateLimited when the node is away."""
    assert source.address is not None
    code = node.call("eth_getCode", source.address, "latest")
    if code in (None, "0x", ""):
        raise SourcesError(f"no contract at {source.address} (on the node's latest block)")
    try:
        if source.kind == "chainlink":
            decimals, description = node.batch(
                _calls([(source.address, "decimals()"), (source.address, "description()")])
            )
            return Facts(
                decimals=_uint(decimals),
                description=_text(description),
                aggregator=aggregator_of(node, source.address, "latest"),
            )
        raw0, raw1 = node.batch(
            _calls([(source.address, "token0()"), (source.address, "token1()")])
        )
        token0, token1 = _word_address(raw0), _word_address(raw1)
        d0, s0, d1, s1 = node.batch(
            _calls(
                [
                    (token0, "decimals()"),
                    (token0, "symbol()"),
                    (token1, "decimals()"),
                    (token1, "symbol()"),
                ]
            )
        )
    except (RpcError, ValueError, DecodingError) as exc:  # reverted, or not its shape
        what = "a Chainlink aggregator" if source.kind == "chainlink" else "a Uniswap pool"
        raise SourcesError(f"{source.address} does not answer as {what}: {exc}") from None
    return Facts(token0, token1, _uint(d0), _uint(d1), _text(s0), _text(s1))


def aggregator_of(node: Node, address: str, block: str | int) -> str | None:
    """The aggregator behind a Chainlink proxy at `block`, or None when `address` answers
    no `aggregator()` (an aggregator itself, or a mock): a revert, nothing, or zero."""
    try:
        return read_aggregator(node, address, block)
    except RpcError as exc:
        if exc.code == 3 or "revert" in f"{exc} {exc.data}".lower():
            return None  # reverted: no such function (nodes word and code it apart)
        raise  # any other refusal must not class a proxy as an aggregator for good


def read_aggregator(node: Node, address: str, block: str | int) -> str | None:
    """`aggregator_of`, raising RpcError when the node refuses the call (a revert, or
    the state of a block it has pruned)."""
    at = block if isinstance(block, str) else hex(block)
    raw = node.call("eth_call", {"to": address, "data": _selector("aggregator()")}, at)
    if not isinstance(raw, str) or len(raw) != 66:
        return None
    found = _word_address(raw)
    return None if int(found, 16) == 0 else found


def round_updated_at(node: Node, address: str, block: int) -> int | None:
    """`updatedAt` of a feed's `latestRoundData()` at `block`; None when it has no round
    or does not answer."""
    call = {"to": address, "data": _selector("latestRoundData()")}
    try:
        raw = node.call("eth_call", call, hex(block))
        (_, _, _, updated_at, _) = decode(
            ["uint80", "int256", "uint256", "uint256", "uint80"], bytes.fromhex(raw[2:])
        )
    except (RpcError, ValueError, TypeError, DecodingError):
        return None  # no round yet (FluxAggregator reverts), or not a feed
    return int(updated_at)


def resolve(sources: PriceSources, source: Source, facts: Facts) -> Source:
    """`source` with its base and decimals from `facts`; SourcesError when the file's
    own values disagree with them or `price_of` names neither token (or both)."""

    def bad(key: str, problem: str) -> SourcesError:
        return bad_field(sources, source, key, problem)

    def agree(key: str, given: Any, chain: Any, what: str) -> None:
        if given is not None and given != chain:
            raise bad(key, f"the file says {given!r}, the chain says {chain!r} ({what})")

    if source.kind == "chainlink":
        agree("decimals", source.decimals, facts.decimals, f"decimals() of {source.address}")
        aggregators = ((0, facts.aggregator),) if facts.aggregator is not None else ()
        return replace(source, decimals=facts.decimals, aggregators=aggregators)
    assert facts.token0 is not None and facts.token1 is not None
    agree("decimals0", source.decimals0, facts.decimals0, f"decimals() of token0 {facts.token0}")
    agree("decimals1", source.decimals1, facts.decimals1, f"decimals() of token1 {facts.token1}")
    symbols = {"token0": facts.symbol0 or "", "token1": facts.symbol1 or ""}
    addresses = {"token0": facts.token0, "token1": facts.token1}
    if source.price_of is not None:
        base = _which(source.price_of, addresses, symbols)
        if base is None:
            raise bad(
                "price_of",
                f"{source.price_of!r} is not exactly one of the pool's tokens: {facts.tokens()}",
            )
        agree("base", source.base, base, f"price_of {source.price_of} is {base}")
    elif source.base is not None:
        base = source.base
        named = _which(source.token, {}, symbols)  # the room's name, when it is a symbol
        if named is not None and named != base:
            raise bad(
                "base",
                f"the file says {base!r}, the chain says {source.token} is {named} "
                f"({facts.tokens()})",
            )
    else:
        named = _which(source.token, {}, symbols)
        if named is None:
            raise bad(
                "price_of",
                f"missing, and token {source.token!r} is not the symbol of exactly one of "
                f"the pool's tokens: {facts.tokens()}",
            )
        base = named
    return replace(source, base=base, decimals0=facts.decimals0, decimals1=facts.decimals1)


def _which(name: str, addresses: dict[str, str], symbols: dict[str, str]) -> Any:
    """'token0' or 'token1' for an address or a symbol (case-insensitive) that names
    exactly one of them, else None."""
    if ADDRESS.match(name):
        found = [k for k, a in addresses.items() if a == name.lower()]
    else:
        found = [k for k, s in symbols.items() if s.lower() == name.lower()]
    return found[0] if len(found) == 1 else None


def resolve_all(
    node: Node, sources: PriceSources, known: dict[str, str]
) -> tuple[PriceSources, dict[str, str]]:
    """Every chain source resolved: from `known` (address -> Facts as JSON, what the
    database kept) where it has the address, else read from the node. Returns the
    resolved file and the newly read facts to keep."""
    resolved: list[Source] = []
    new: dict[str, str] = {}
    for source in sources.sources:
        if not source.on_chain:
            resolved.append(source)
            continue
        assert source.address is not None
        stored = known.get(source.address)
        kept = json.loads(stored) if stored is not None else None
        if kept is not None and (source.kind != "chainlink" or "aggregator" in kept):
            facts = Facts(**kept)
        else:  # never read, or read before proxies were asked for their aggregator
            try:
                facts = read(node, source)
            except SourcesError as exc:
                raise bad_field(sources, source, "address", str(exc)) from None
            new[source.address] = json.dumps(asdict(facts), sort_keys=True)
            log.info("price source %s: read from the chain: %s", source.name, facts)
        resolved.append(resolve(sources, source, facts))
    return sources.with_sources(tuple(resolved)), new
