"""Contract event subscriptions: `events:<contract>` and `events:<contract>.<event>`,
with an optional filter on indexed arguments, and the routing of each decoded event to
the subscriptions it matches (contract: docs/contracts.md, docs/protocol.md).

A subscription is its channel and its normalised filter; its id is derived from both,
so every client that asks for the same thing holds the same subscription, and one
encoded `contract-event` serves them all (a room of the transport per subscription).
A filter is equality per argument (a list means any of them, several arguments all of
them), on indexed arguments only. Routing looks up, for each indexed value of an
event, the filtered subscriptions indexed under it (each under every value of one of
its arguments), and the unfiltered ones of its channels: work in proportion to the
subscriptions an event matches, not to those of its room.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from indexer.contracts import Contract
from indexer.event_abi import EventAbi, column_value, topic_value

MAX_FILTER_VALUES = 32  # values in one filter, all arguments together


class FilterError(ValueError):
    """A channel or filter that cannot be a subscription; str() is the client message."""


@dataclass(frozen=True)
class Subscription:
    id: str
    lane: str  # the room of its chain's lane (`realtime.push.lane`)
    contract: str
    event: str | None  # the event's key; None: every event of the contract
    filter: tuple[tuple[str, frozenset[str]], ...] = ()  # (argument, values), sorted
    columns: tuple[tuple[str, frozenset[str]], ...] = ()  # the same, by stored column

    @property
    def channel(self) -> str:
        return f"events:{self.contract}" + (f".{self.event}" if self.event else "")

    @property
    def room(self) -> str:
        return f"~sub:{self.id}"

    def matches(self, values: Mapping[str, str]) -> bool:
        return all(values.get(arg) in allowed for arg, allowed in self.filter)


class EventRouter:
    """Every contract event subscription of this server, and who holds each."""

    def __init__(self, contracts: Mapping[str, tuple[str, Contract]]) -> None:
        """`contracts`: each contract of the file by name, with its chain's lane room."""
        self.contracts = dict(contracts)
        self._subs: dict[str, Subscription] = {}
        self._holders: dict[str, set[str]] = {}  # subscription id -> sids
        self._held: dict[str, set[str]] = {}  # sid -> subscription ids
        self._plain: dict[tuple[str, str | None], set[str]] = {}  # (contract, event) -> ids
        self._by_value: dict[tuple[str, str, str, str], set[str]] = {}

    # subscriptions ---------------------------------------------------------------------

    def subscription(self, key: str, given: object) -> Subscription:
        """The subscription `events:<key>` with filter `given`; FilterError naming the
        problem ("Invalid channel: ..." or "Invalid filter: ...")."""
        contract_name, _, event_key = key.partition(".")
        found = self.contracts.get(contract_name)
        if found is None:
            raise FilterError(f"Invalid channel: no contract {contract_name!r}")
        lane, contract = found
        event: EventAbi | None = None
        if event_key:
            event = contract.event(event_key)
            if event is None:
                same = [e.signature for e in contract.events if e.name == event_key]
                if len(same) > 1:
                    raise FilterError(
                        f"Invalid channel: {event_key!r} is ambiguous in {contract_name}, "
                        f"name one of {', '.join(same)}"
                    )
                raise FilterError(f"Invalid channel: {contract_name} has no event {event_key!r}")
        filters = _filter(given, event, contract_name)
        key_event = contract.key(event) if event is not None else None
        columns = tuple(
            (f"indexed_{_position(event, arg)}", values) for arg, values in filters
        ) if event is not None else ()  # fmt: skip
        digest = hashlib.sha256(
            json.dumps([lane, contract_name, key_event, [[a, sorted(v)] for a, v in filters]])
            .encode()
        ).hexdigest()[:16]  # fmt: skip
        return Subscription(digest, lane, contract_name, key_event, filters, columns)

    def add(self, sid: str, sub: Subscription) -> None:
        if sub.id not in self._subs:
            self._subs[sub.id] = sub
            self._holders[sub.id] = set()
            if not sub.filter:
                self._plain.setdefault((sub.contract, sub.event), set()).add(sub.id)
            else:
                arg, values = min(sub.filter, key=lambda f: len(f[1]))
                assert sub.event is not None
                for value in values:
                    self._by_value.setdefault((sub.contract, sub.event, arg, value), set()).add(
                        sub.id
                    )
        self._holders[sub.id].add(sid)
        self._held.setdefault(sid, set()).add(sub.id)

    def remove(self, sid: str, sub_id: str) -> Subscription | None:
        """`sid` no longer holds `sub_id`; the subscription, if it held it."""
        sub = self._subs.get(sub_id)
        if sub is None or sid not in self._holders[sub_id]:
            return None
        self._holders[sub_id].discard(sid)
        self._held[sid].discard(sub_id)
        if not self._held[sid]:
            del self._held[sid]
        if not self._holders[sub_id]:
            self._drop(sub)
        return sub

    def forget(self, sid: str) -> None:
        for sub_id in list(self._held.get(sid, ())):
            self.remove(sid, sub_id)

    def held(self, sid: str) -> list[Subscription]:
        return [self._subs[i] for i in sorted(self._held.get(sid, ()))]

    def holders(self, lane: str) -> set[str]:
        """The sids holding a subscription on the chain of `lane` (they get its
        `reorg`s)."""
        return {
            sid for sub_id, sids in self._holders.items() if self._subs[sub_id].lane == lane
            for sid in sids
        }  # fmt: skip

    def __len__(self) -> int:
        return len(self._subs)

    def _drop(self, sub: Subscription) -> None:
        del self._subs[sub.id], self._holders[sub.id]
        if not sub.filter:
            self._discard(self._plain, (sub.contract, sub.event), sub.id)
            return
        assert sub.event is not None
        for arg, values in sub.filter:
            for value in values:
                self._discard(self._by_value, (sub.contract, sub.event, arg, value), sub.id)

    @staticmethod
    def _discard(index: dict[Any, set[str]], key: Any, sub_id: str) -> None:
        ids = index.get(key)
        if ids is not None:
            ids.discard(sub_id)
            if not ids:
                del index[key]

    # routing ---------------------------------------------------------------------------

    def route(self, event: Mapping[str, Any]) -> list[Subscription]:
        """The subscriptions a decoded event (as `block.indexed` carries it) answers."""
        contract, key = event["contract"], event["event"]
        ids: set[str] = set()
        for plain in (self._plain.get((contract, None)), self._plain.get((contract, key))):
            if plain:
                ids |= plain
        if self._by_value:
            values = self.indexed_values(event)
            for arg, value in values.items():
                for sub_id in self._by_value.get((contract, key, arg, value), ()):
                    if self._subs[sub_id].matches(values):
                        ids.add(sub_id)
        return [self._subs[i] for i in ids]

    def indexed_values(self, event: Mapping[str, Any]) -> dict[str, str]:
        """An event's indexed arguments by name, normalised as filters are."""
        found = self.contracts.get(event["contract"])
        abi = found[1].event(event["event"]) if found else None
        if abi is None:
            return {}
        args = event["args"]
        return {
            p.name: column_value(p, args[p.name])
            for p in abi.inputs
            if p.indexed and p.name and p.name in args
        }


def _position(event: EventAbi, arg: str) -> int:
    """1, 2 or 3: which of the event's indexed arguments `arg` is."""
    return 1 + [p.name for p in event.indexed].index(arg)


def _filter(
    given: object, event: EventAbi | None, contract: str
) -> tuple[tuple[str, frozenset[str]], ...]:
    if given is None:
        return ()
    if not isinstance(given, dict):
        raise FilterError("Invalid filter: expected an object {argument: value or [values]}")
    if not given:
        return ()
    if event is None:
        raise FilterError(
            f"Invalid filter: a filter needs one event's channel (events:{contract}.<event>)"
        )
    indexed = {p.name: p for p in event.indexed if p.name}
    out: list[tuple[str, frozenset[str]]] = []
    count = 0
    for arg, value in given.items():
        param = indexed.get(arg) if isinstance(arg, str) else None
        if param is None:
            known = ", ".join(indexed) or "none"
            what = "not an indexed argument" if any(
                p.name == arg for p in event.inputs
            ) else "unknown"  # fmt: skip
            raise FilterError(
                f"Invalid filter: {arg!r} is {what} of {event.name} (indexed: {known})"
            )
        if _position(event, arg) > 3:
            raise FilterError(
                f"Invalid filter: {arg!r} is the fourth indexed argument (of an anonymous "
                "event): only the first three can be filtered"
            )
        values = value if isinstance(value, list) else [value]
        if not values:
            raise FilterError(f"Invalid filter: {arg!r} lists no value")
        count += len(values)
        if count > MAX_FILTER_VALUES:
            raise FilterError(f"Invalid filter: more than {MAX_FILTER_VALUES} values")
        try:
            out.append((arg, frozenset(topic_value(param, v) for v in values)))
        except ValueError as exc:
            raise FilterError(f"Invalid filter: {arg!r}: {exc}") from None
    return tuple(sorted(out, key=lambda f: f[0]))
