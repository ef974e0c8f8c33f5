"""Logs to contract events: which stored logs are events of the contracts file, and
their `contract_events` rows (contract: docs/contracts.md).

A log is matched by its address and topic0 (an anonymous event, which has no topic0,
by its address and its number of topics) among one chain's contracts, and decoded by
`indexer.event_abi`. A factory's event names a child (`children`); the child's logs
are its contract's events from the factory event's position in the chain on (the
caller looks the children of a block's addresses up: they may have been found by
another process, or later than the child's logs were stored). Each log is one
contract's (the file refuses an address listed twice on one chain). A log that does
not fit its event is skipped with a warning at most once a minute per event, never a
failed block. Logs of blocks below a contract's `start_block` are not decoded.

The same rows come from a block as it is stored and from the `logs` table later (a
contract added to the file: re-decoding without the node), so both paths run `rows`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from indexer.contracts import Contract
from indexer.event_abi import EventAbi, LogMismatch, Param, column_value

log = logging.getLogger(__name__)

Row = Mapping[str, Any]
WARN_EVERY = 60.0  # seconds between warnings about one event's logs that do not decode


@dataclass(frozen=True)
class Watched:
    contract: Contract
    event: EventAbi
    key: str  # the event's key in rooms and rows (`Contract.key`)

    @cached_property
    def columns(self) -> tuple[tuple[str, Param], ...]:
        """The first three indexed arguments (name, param): the `indexed_<i>` columns."""
        return tuple(zip(self.event.indexed_names, self.event.indexed, strict=True))[:3]


@dataclass(frozen=True)
class Child:
    """An address a factory's event named, from that event's (block, log index) on."""

    contract: str
    address: str
    block_number: int
    log_index: int


class _Events:
    """One contract's events by topic0, and its anonymous ones."""

    def __init__(self, contract: Contract) -> None:
        self.by_topic: dict[str, Watched] = {}
        self.anonymous: list[Watched] = []
        for event in contract.events:
            watched = Watched(contract, event, contract.key(event))
            if event.anonymous:
                self.anonymous.append(watched)
            else:
                self.by_topic[event.topic0] = watched

    def match(self, topics: Sequence[str]) -> Watched | None:
        found = self.by_topic.get(topics[0]) if topics else None
        if found is not None:
            return found
        return next((w for w in self.anonymous if len(topics) == len(w.event.indexed)), None)


class EventDecoder:
    """The events of one chain's `contracts`, by where their logs come from."""

    def __init__(self, contracts: Sequence[Contract]) -> None:
        self.contracts = tuple(contracts)
        self._events = {c.name: _Events(c) for c in self.contracts}
        self._at = {a: self._events[c.name] for c in self.contracts for a in c.addresses}
        self._factories = {
            (c.factory.address, c.factory.event.topic0): c
            for c in self.contracts
            if c.factory is not None
        }
        self._warned: dict[str, tuple[float, int]] = {}  # event -> (last warning, skipped)

    def __bool__(self) -> bool:
        return bool(self.contracts)

    @property
    def has_factories(self) -> bool:
        return bool(self._factories)

    def listed(self, address: str) -> bool:
        """Whether `address` is one the file lists (not a child)."""
        return address in self._at

    def children(self, logs: Iterable[Row]) -> list[Child]:
        """The children the factory events among `logs` name."""
        found: list[Child] = []
        for row in logs:
            if row["topic0"] is None:
                continue
            contract = self._factories.get((row["address"], row["topic0"]))
            if contract is None or contract.factory is None:
                continue
            number = int(row["block_number"])
            if contract.start_block is not None and number < contract.start_block:
                continue
            topics = _topics(row)
            try:
                args = contract.factory.event.decode(topics, row["data"])
            except LogMismatch as exc:
                self._skipped(f"{contract.name} (factory)", row, exc)
                continue
            found.append(
                Child(contract.name, args[contract.factory.parameter], number, row["log_index"])
            )
        return found

    def match(
        self, row: Row, topics: Sequence[str], children: Mapping[str, Child]
    ) -> Watched | None:
        """The event the log `row` is, if any of ours: at a listed address, or at a
        child's at or after its creation."""
        events = self._at.get(row["address"])
        if events is None:
            child = children.get(row["address"])
            if child is None or (int(row["block_number"]), int(row["log_index"])) <= (
                child.block_number,
                child.log_index,
            ):
                return None
            events = self._events[child.contract]
        return events.match(topics)

    def rows(
        self,
        chain_id: int,
        logs: Iterable[Row],
        blocks: Mapping[int, tuple[str, int]],
        children: Mapping[str, Child] | None = None,
    ) -> list[dict[str, Any]]:
        """The `contract_events` rows of `logs` (rows of the `logs` table), whose blocks'
        (hash, timestamp) are in `blocks` by number; `children` by address."""
        out: list[dict[str, Any]] = []
        for row in logs:
            topics = _topics(row)
            watched = self.match(row, topics, children or {})
            if watched is None:
                continue
            number = int(row["block_number"])
            start = watched.contract.start_block
            if start is not None and number < start:
                continue
            try:
                args = watched.event.decode(topics, row["data"])
            except LogMismatch as exc:
                self._skipped(f"{watched.contract.name}.{watched.key}", row, exc)
                continue
            block_hash, timestamp = blocks[number]
            indexed: list[str | None] = [column_value(p, args[name]) for name, p in watched.columns]
            indexed += [None] * (3 - len(indexed))
            out.append(
                {
                    "chain_id": chain_id,
                    "block_number": number,
                    "log_index": int(row["log_index"]),
                    "block_hash": block_hash,
                    "block_timestamp": timestamp,
                    "transaction_hash": row["transaction_hash"],
                    "address": row["address"],
                    "contract": watched.contract.name,
                    "event": watched.key,
                    "signature": watched.event.signature,
                    "args": args,
                    "indexed_1": indexed[0],
                    "indexed_2": indexed[1],
                    "indexed_3": indexed[2],
                }
            )
        return out

    def _skipped(self, name: str, row: Row, exc: LogMismatch) -> None:
        last, skipped = self._warned.get(name, (0.0, 0))
        now = time.monotonic()
        if now - last < WARN_EVERY:
            self._warned[name] = (last, skipped + 1)
            return
        self._warned[name] = (now, 0)
        more = f" ({skipped} more skipped since the last warning)" if skipped else ""
        log.warning(
            "skipped a log of %s at block %s, index %s: %s%s",
            name,
            row["block_number"],
            row["log_index"],
            exc,
            more,
        )


def _topics(row: Row) -> list[str]:
    return [t for t in (row["topic0"], row["topic1"], row["topic2"], row["topic3"]) if t]
