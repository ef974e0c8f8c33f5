"""The contracts file (contract: docs/contracts.md).

`CONTRACTS` names a TOML file with one `[[contract]]` table per contract whose events a
deployment decodes. Loading checks the file as a whole: a bad one raises
ContractsError, one line naming the file, the entry and the field, so that every
process stops at start with that line (and `chainpulse contracts check` says the same).

Each contract's events are `EventAbi`s (`indexer.event_abi`), from its ABI file by name
or from human-readable signatures. An event is known in rooms, rows and the read API by
its `key`: its name, or its signature where the contract has two events of one name
(then the short name is refused as ambiguous).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from indexer.config_files import read_document, top_tables
from indexer.errors import ConfigError
from indexer.event_abi import AbiError, EventAbi, from_json, parse_signature

NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
FIELDS = {"name", "chain", "address", "abi", "events", "start_block", "factory"}
FACTORY_FIELDS = {"address", "event", "parameter"}


class ContractsError(ConfigError):
    """The contracts file cannot be used; the message names the file, entry and field."""


@dataclass(frozen=True)
class Factory:
    """Every address the `parameter` of `event`, emitted by `address`, names is a child:
    its events are decoded from its creation block on."""

    address: str  # lowercase
    event: EventAbi
    parameter: str


@dataclass(frozen=True)
class Contract:
    name: str
    number: int  # its place in the file, from 1
    events: tuple[EventAbi, ...]
    addresses: tuple[str, ...] = ()  # lowercase; none when only a factory names them
    chain: str | None = None  # a chain's name; None: the primary
    start_block: int | None = None
    factory: Factory | None = None

    def key(self, event: EventAbi) -> str:
        """The event's name, or its signature when the contract has two of that name."""
        same = sum(1 for e in self.events if e.name == event.name)
        return event.name if same == 1 else event.signature

    def event(self, key: str) -> EventAbi | None:
        """The event known by `key` (a name that is not ambiguous, or a signature)."""
        return self._by_key.get(key)

    @cached_property
    def _by_key(self) -> dict[str, EventAbi]:
        """Each event by its key and by its signature (routing asks for every event)."""
        return {
            **{event.signature: event for event in self.events},
            **{self.key(event): event for event in self.events},
        }

    @property
    def label(self) -> str:
        return f"contract {self.number} ({self.name})"


@dataclass(frozen=True)
class ContractsFile:
    path: str
    contracts: tuple[Contract, ...]

    def named(self, name: str) -> Contract | None:
        return next((c for c in self.contracts if c.name == name), None)

    def on_chain(self, chain: str, primary: bool) -> tuple[Contract, ...]:
        """The contracts of the chain called `chain` (the primary's include those that
        name no chain)."""
        return tuple(c for c in self.contracts if c.chain == chain or (c.chain is None and primary))


def load_contracts(path: str) -> ContractsFile:
    """Read and check the file at `path` (and the ABI files it names); ContractsError."""
    document = read_document(path, f"CONTRACTS {path}", ContractsError)
    return parse_contracts(document, path, Path(path).expanduser().parent)


def parse_contracts(document: Any, path: str, directory: Path = Path()) -> ContractsFile:
    """Check a parsed file (`{"contract": [...]}`); `path` names it in messages, and
    `abi` paths are read relative to `directory` (the file's own)."""
    where = f"CONTRACTS {path}"
    tables = top_tables(document, where, "contract", ContractsError)
    contracts: list[Contract] = []
    for number, table in enumerate(tables, start=1):
        contract = _contract(table, number, where, directory)
        for other in contracts:
            if other.name == contract.name:
                raise ContractsError(
                    f"{where}: {contract.label}: field 'name' repeats {other.label}'s"
                )
            if other.chain == contract.chain:
                shared = sorted(set(other.addresses) & set(contract.addresses))
                if shared:
                    raise ContractsError(
                        f"{where}: {contract.label}: field 'address': {shared[0]} is "
                        f"{other.label}'s already (a log is decoded as one contract's)"
                    )
        contracts.append(contract)
    return ContractsFile(path, tuple(contracts))


def _contract(table: Any, number: int, where: str, directory: Path) -> Contract:
    if not isinstance(table, dict):
        raise ContractsError(f"{where}: contract {number}: expected a table")
    name = table.get("name")
    label = f"contract {number}"
    if isinstance(name, str) and NAME.match(name):
        label = f"contract {number} ({name})"
    here = f"{where}: {label}"
    for key in sorted(set(table) - FIELDS):
        raise ContractsError(f"{here}: unknown field {key!r} (known: {', '.join(sorted(FIELDS))})")
    if "name" not in table:
        raise ContractsError(f"{here}: field 'name' is required")
    if not isinstance(name, str) or not NAME.match(name):
        raise ContractsError(
            f"{here}: field 'name' must be 1 to 32 of A-Z a-z 0-9 _ - (no dot), got {name!r}"
        )
    if "address" not in table and "factory" not in table:
        raise ContractsError(f"{here}: field 'address' is required (or a 'factory')")
    addresses = _addresses(table["address"], here) if "address" in table else ()
    chain = table.get("chain")
    if chain is not None and (not isinstance(chain, str) or not chain):
        raise ContractsError(f"{here}: field 'chain' must be a chain's name, got {chain!r}")
    abi = _abi(table["abi"], here, directory) if "abi" in table else None
    events = _events(table.get("events"), abi, here)
    start = table.get("start_block")
    if start is not None and (not isinstance(start, int) or isinstance(start, bool) or start < 0):
        raise ContractsError(
            f"{here}: field 'start_block' must be a whole number of 0 or more, got {start!r}"
        )
    factory = _factory(table["factory"], here) if "factory" in table else None
    return Contract(name, number, events, addresses, chain, start, factory)


def _address(value: Any, here: str, field: str) -> str:
    if not isinstance(value, str) or not ADDRESS.match(value.strip()):
        raise ContractsError(
            f"{here}: field {field!r} must be an address (0x and 40 hex digits), got {value!r}"
        )
    return value.strip().lower()


def _addresses(value: Any, here: str) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ContractsError(f"{here}: field 'address' lists no address")
    found = tuple(_address(v, here, "address") for v in values)
    if len(set(found)) != len(found):
        raise ContractsError(f"{here}: field 'address' lists an address twice")
    return found


def _abi(value: Any, here: str, directory: Path) -> list[dict[str, Any]]:
    """A JSON ABI, or a Foundry/Hardhat artifact that holds one under "abi"."""
    if not isinstance(value, str) or not value:
        raise ContractsError(f"{here}: field 'abi' must be a path to a JSON file, got {value!r}")
    path = (directory / Path(value).expanduser()).resolve()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ContractsError(f"{here}: field 'abi': cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractsError(f"{here}: field 'abi': {path} is not JSON: {exc}") from None
    abi = document.get("abi") if isinstance(document, dict) else document
    if not isinstance(abi, list) or not all(isinstance(item, dict) for item in abi):
        raise ContractsError(
            f"{here}: field 'abi': {path} holds no ABI (a JSON list, or an object with \"abi\")"
        )
    return abi


def _events(value: Any, abi: list[dict[str, Any]] | None, here: str) -> tuple[EventAbi, ...]:
    in_abi: list[EventAbi] = []
    for item in abi or []:
        if item.get("type") == "event":
            try:
                in_abi.append(from_json(item))
            except AbiError as exc:
                raise ContractsError(f"{here}: field 'abi': {exc}") from None
    if value is None:
        if abi is None:
            raise ContractsError(f"{here}: field 'events' is required without an 'abi'")
        if not in_abi:
            raise ContractsError(f"{here}: field 'abi': the ABI has no events")
        return tuple(in_abi)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ContractsError(
            f"{here}: field 'events' must be a list of event names or signatures, got {value!r}"
        )
    chosen: list[EventAbi] = []
    for entry in value:
        event = _event(entry.strip(), in_abi, abi is not None, here)
        if any(e.signature == event.signature for e in chosen):
            raise ContractsError(f"{here}: field 'events': {event.signature} is listed twice")
        chosen.append(event)
    return tuple(chosen)


def _event(entry: str, in_abi: Sequence[EventAbi], has_abi: bool, here: str) -> EventAbi:
    if "(" in entry:
        try:
            event = parse_signature(entry)
        except AbiError as exc:
            raise ContractsError(f"{here}: field 'events': {exc}") from None
        if has_abi and not any(_same_layout(e, event) for e in in_abi):
            raise ContractsError(
                f"{here}: field 'events': {event.signature} (with its indexed arguments) "
                "is not in the ABI"
            )
        return event
    if not has_abi:
        raise ContractsError(
            f"{here}: field 'events': {entry!r} is a name; without an 'abi' give its signature"
        )
    named = [e for e in in_abi if e.name == entry]
    if not named:
        known = ", ".join(sorted({e.name for e in in_abi})) or "none"
        raise ContractsError(
            f"{here}: field 'events': the ABI has no event {entry!r} (its events: {known})"
        )
    if len(named) > 1:
        raise ContractsError(
            f"{here}: field 'events': {entry!r} is ambiguous, the ABI has "
            f"{' and '.join(e.signature for e in named)}: give the signature"
        )
    return named[0]


def _same_layout(a: EventAbi, b: EventAbi) -> bool:
    """One event, whatever its arguments are named: types and indexed flags in order."""
    return a.signature == b.signature and [p.indexed for p in a.inputs] == [
        p.indexed for p in b.inputs
    ]


def _factory(value: Any, here: str) -> Factory:
    if not isinstance(value, dict):
        raise ContractsError(
            f"{here}: field 'factory' must be a table {{address, event, parameter}}"
        )
    for key in sorted(set(value) - FACTORY_FIELDS):
        raise ContractsError(f"{here}: field 'factory': unknown field {key!r}")
    for key in sorted(FACTORY_FIELDS - set(value)):
        raise ContractsError(f"{here}: field 'factory': field {key!r} is required")
    address = _address(value["address"], here, "factory.address")
    if not isinstance(value["event"], str):
        raise ContractsError(f"{here}: field 'factory.event' must be the event's signature")
    try:
        event = parse_signature(value["event"])
    except AbiError as exc:
        raise ContractsError(f"{here}: field 'factory.event': {exc}") from None
    parameter = value["parameter"]
    found = next((p for p in event.inputs if p.name == parameter), None)
    if found is None:
        names = ", ".join(p.name for p in event.inputs if p.name) or "no named ones"
        raise ContractsError(
            f"{here}: field 'factory.parameter': {event.name} has no argument {parameter!r} "
            f"(its arguments: {names})"
        )
    if found.type != "address":
        raise ContractsError(
            f"{here}: field 'factory.parameter': {parameter!r} is {found.type}, not an address"
        )
    return Factory(address, event, parameter)
