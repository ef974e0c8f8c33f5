"""The read API of contract events (contract: docs/contracts.md#read-api).

- `/api/contracts`: each contract of the contracts file, its chain and its events.
- `/api/events/<contract>.<event>?chain=&from_block=&to_block=&arg.<name>=&limit=&cursor=`:
  one event's stored events, newest first, `limit` (1..100, default 50) at a time;
  `next` is the cursor of the following page (null on the last). `arg.<name>` filters
  on an indexed argument as subscriptions do (repeated: any of the values).
- `/api/contracts/<name>/addresses?limit=&cursor=`: a contract's listed addresses and,
  for a factory, its children (by address, `limit` 1..1000, default 1000).

Each answer is `(status, body)`; the HTTP app sends it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from indexer import queries
from indexer.contracts import Contract
from realtime.push.subscriptions import EventRouter, FilterError
from realtime.reads import Database

MAX_EVENTS = 100
MAX_HEIGHT = 2**63 - 1
MAX_CHILDREN = 1000
CURSOR = re.compile(r"^(\d{1,19}):(\d{1,9})$")
ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")

Answer = tuple[int, Any]


class ContractReads:
    def __init__(
        self, db: Database, contracts: dict[str, tuple[Contract, Callable[[], int]]]
    ) -> None:
        """`contracts`: each contract by name, with its chain's id (asked when needed:
        one chain's id may be learned from the database)."""
        self.db = db
        self.contracts = contracts
        self.router = EventRouter({name: (name, c) for name, (c, _) in contracts.items()})

    def listing(self) -> Answer:
        """`/api/contracts`: each contract of the file, its chain and its events."""
        return 200, [
            {
                "name": name,
                "chainId": chain_of() or None,
                "addresses": list(contract.addresses),
                "factory": None if contract.factory is None else contract.factory.address,
                "events": [
                    {
                        "key": contract.key(event),
                        "signature": event.signature,
                        "indexed": [p.name for p in event.indexed],
                    }
                    for event in contract.events
                ],
            }
            for name, (contract, chain_of) in self.contracts.items()
        ]

    def events(self, key: str, query: dict[str, list[str]]) -> Answer:
        name, _, event_key = key.partition(".")
        found = self.contracts.get(name)
        if found is None or not event_key:
            return 404, {"error": f"no events {key!r}: /api/events/<contract>.<event>"}
        contract, chain_of = found
        chain = chain_of()
        asked = _whole(query.get("chain", [""])[0]) if "chain" in query else chain
        if asked != chain:
            return 404, {"error": f"{name} is a contract of chain {chain}"}
        given = {
            k.removeprefix("arg."): v if len(v) > 1 else v[0]
            for k, v in query.items()
            if k.startswith("arg.")
        }
        try:
            sub = self.router.subscription(key, given or None)
        except FilterError as exc:
            message = str(exc)
            return (404 if message.startswith("Invalid channel") else 400), {"error": message}
        limit = _whole(query.get("limit", ["50"])[0])
        if limit is None or not 1 <= limit <= MAX_EVENTS:
            return 400, {"error": f"limit must be 1..{MAX_EVENTS}"}
        bounds = [_whole(query[k][0]) if k in query else -1 for k in ("from_block", "to_block")]
        if None in bounds:
            return 400, {"error": "from_block and to_block must be block numbers"}
        cursor = query.get("cursor", [None])[0]
        before = None
        if cursor is not None:
            match = CURSOR.match(cursor)
            if match is None:
                return 400, {"error": "cursor must be the `next` of an earlier answer"}
            before = (int(match.group(1)), int(match.group(2)))
            if before[0] > MAX_HEIGHT:
                return 400, {"error": "cursor must be the `next` of an earlier answer"}
        first, last = (b if b != -1 else None for b in bounds)
        assert sub.event is not None
        rows = self.db.read(
            queries.contract_events_page, chain, sub.contract, sub.event, sub.columns,
            first, last, before, limit + 1,
        )  # fmt: skip
        page = [{"chainId": chain, **row} for row in rows[:limit]]
        more = len(rows) > limit
        tail = page[-1] if page else None
        following = f"{tail['blockNumber']}:{tail['logIndex']}" if more and tail else None
        return 200, {"events": page, "next": following}

    def addresses(self, name: str, query: dict[str, list[str]]) -> Answer:
        found = self.contracts.get(name)
        if found is None:
            return 404, {"error": f"no contract {name!r}"}
        contract, chain_of = found
        limit = _whole(query.get("limit", [str(MAX_CHILDREN)])[0])
        if limit is None or not 1 <= limit <= MAX_CHILDREN:
            return 400, {"error": f"limit must be 1..{MAX_CHILDREN}"}
        cursor = query.get("cursor", [None])[0]
        if cursor is not None and not ADDRESS.match(cursor):
            return 400, {"error": "cursor must be the `next` of an earlier answer"}
        children = (
            self.db.read(queries.contract_children, chain_of(), name, cursor, limit + 1)
            if contract.factory is not None
            else []
        )
        page = children[:limit]
        return 200, {
            "chainId": chain_of(),
            "contract": name,
            "addresses": list(contract.addresses),
            "children": [{"address": a, "blockNumber": n, "logIndex": i} for a, n, i in page],
            "next": page[-1][0] if len(children) > limit else None,
        }


def _whole(raw: str) -> int | None:
    """A whole number a BIGINT column holds (at most 2^63 - 1), or None."""
    if not raw or len(raw) > 19 or not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if value <= MAX_HEIGHT else None
