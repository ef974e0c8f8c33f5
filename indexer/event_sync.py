"""Re-decoding without the node: a contract added to the contracts file, or changed
(its ABI, its events, its addresses, its factory, its start), has the history the
database holds decoded from the stored `logs` table, while indexing goes on (contract:
docs/contracts.md#adding-changing-and-removing-a-contract).

Each contract's state is a `chainpulse_meta` entry of its chain, `contract_sync:<name>`:
the fingerprint of its entry as last decoded, and the heights its history covers with
how many of them are done. `plan` compares the file with it: a contract whose
fingerprint changed loses its rows and gets a new range, from the lowest stored block
to the highest (later blocks are decoded as they are stored). `decode_range` decodes one
piece of it in one transaction and counts it done; pieces may run in any order, in any
number of processes, and again (rows are inserted unless present): a factory's child
found by a later piece has its logs in pieces done before decoded then. Nothing here
calls the node.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from indexer import models as m
from indexer.blocks import BlockData
from indexer.contracts import Contract
from indexer.event_decoding import EventDecoder
from indexer.event_store import record_block_events
from indexer.store import Store

log = logging.getLogger(__name__)

PREFIX = "contract_sync:"
PIECE = 2_000  # blocks per decode job


@dataclass(frozen=True)
class SyncState:
    fingerprint: str
    first: int  # the history's heights, first..last, in pieces of PIECE from `first`
    last: int
    done: tuple[int, ...] = ()  # the first height of each piece decoded

    @property
    def total(self) -> int:
        return max(0, self.last - self.first + 1)

    @property
    def decoded(self) -> int:
        """Heights decoded (a piece decoded twice counts once)."""
        return sum(min(lo + PIECE - 1, self.last) - lo + 1 for lo in self.done)

    @property
    def complete(self) -> bool:
        return self.decoded >= self.total

    @classmethod
    def load(cls, text: str) -> SyncState:
        data = json.loads(text)
        return cls(data["fingerprint"], data["first"], data["last"], tuple(data["done"]))

    def dump(self) -> str:
        return json.dumps(asdict(self))


def fingerprint(contract: Contract) -> str:
    """What decoding depends on in a contract's entry (not its place in the file)."""
    spec = {
        "addresses": sorted(contract.addresses),
        "events": [e.to_json() for e in contract.events],
        "keys": [contract.key(e) for e in contract.events],
        "start": contract.start_block,
        "factory": None
        if contract.factory is None
        else [
            contract.factory.address,
            contract.factory.event.to_json(),
            contract.factory.parameter,
        ],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def states(store: Store, names: Sequence[str]) -> dict[str, SyncState | None]:
    with store.errors(), store.engine.connect() as conn:
        found = store.meta_under(conn, PREFIX)
    return {name: SyncState.load(found[name]) if name in found else None for name in names}


def plan(store: Store, contracts: Sequence[Contract]) -> dict[str, SyncState]:
    """Start the history of every contract whose entry changed since it was decoded (or
    that never was): its rows go, and its range is the stored heights. Returns each
    contract's state, new or as it was."""
    out: dict[str, SyncState] = {}
    with store.writing() as conn:
        known = store.meta_under(conn, PREFIX)
        bounds = conn.execute(
            sa.select(sa.func.min(m.blocks.c.number), sa.func.max(m.blocks.c.number)).where(
                m.blocks.c.chain_id == store.chain
            )
        ).one()
        for contract in contracts:
            print_ = fingerprint(contract)
            state = SyncState.load(known[contract.name]) if contract.name in known else None
            if state is not None and state.fingerprint == print_:
                out[contract.name] = state
                continue
            for table in (m.contract_events, m.contract_children):
                conn.execute(
                    table.delete().where(
                        table.c.chain_id == store.chain, table.c.contract == contract.name
                    )
                )
            first, last = (int(bounds[0]), int(bounds[1])) if bounds[0] is not None else (0, -1)
            state = SyncState(print_, first, last)
            store.set_meta(conn, PREFIX + contract.name, state.dump())
            out[contract.name] = state
    return out


def pieces(state: SyncState) -> list[tuple[int, int]]:
    return [
        (lo, min(lo + PIECE - 1, state.last)) for lo in range(state.first, state.last + 1, PIECE)
    ]


def decode_range(store: Store, contracts: Sequence[Contract], first: int, last: int) -> int:
    """Decode the stored logs of the piece first..last (as `pieces` cut it) for
    `contracts` (those whose plan still stands: a piece of a superseded plan decodes
    nothing), and count it done for each; returns the logs read."""
    with store.writing() as conn:
        known = store.meta_under(conn, PREFIX)
        current = [
            c
            for c in contracts
            if c.name in known and SyncState.load(known[c.name]).fingerprint == fingerprint(c)
        ]
        stale = sorted({c.name for c in contracts} - {c.name for c in current})
        if stale:
            log.warning(
                "not decoding %s at blocks %d-%d: this process's contracts file has another "
                "entry for it than the one being decoded (restart the workers after "
                "changing CONTRACTS)",
                ", ".join(stale), first, last,
            )  # fmt: skip
        if not current:
            return 0
        decoder = EventDecoder(current)
        logs = m.logs.c
        query = sa.select(m.logs).where(
            logs.chain_id == store.chain, logs.block_number.between(first, last)
        )
        # only the logs that can be ours: the listed addresses', the factories', and the
        # stored children's (a child found in this piece is found with its factory's log)
        listed = sorted({a for c in current for a in c.addresses})
        factories = sorted({c.factory.address for c in current if c.factory is not None})
        children = sa.select(m.contract_children.c.address).where(
            m.contract_children.c.chain_id == store.chain,
            m.contract_children.c.contract.in_([c.name for c in current]),
        )
        query = query.where(logs.address.in_([*listed, *factories]) | logs.address.in_(children))
        ordered = query.order_by(logs.block_number, logs.log_index)
        rows = [dict(r) for r in conn.execute(ordered).mappings()]
        numbers = sorted({r["block_number"] for r in rows})
        heads: dict[int, Any] = {}
        if numbers:
            b = m.blocks.c
            for number, block_hash, timestamp in conn.execute(
                sa.select(b.number, b.hash, b.timestamp).where(
                    b.chain_id == store.chain, b.number.between(numbers[0], numbers[-1])
                )
            ):
                heads[int(number)] = (block_hash, int(timestamp))
        by_block: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_block.setdefault(row["block_number"], []).append(row)
        datas = [
            BlockData({"number": n, "hash": heads[n][0], "timestamp": heads[n][1]}, [], logs_of)
            for n, logs_of in sorted(by_block.items())
            if n in heads
        ]
        record_block_events(conn, decoder, datas, store.chain, again=True)
        for contract in current:
            state = SyncState.load(known[contract.name])
            done = tuple(sorted({*state.done, first}))
            store.set_meta(
                conn, PREFIX + contract.name, SyncState(
                    state.fingerprint, state.first, state.last, done
                ).dump(),
            )  # fmt: skip
        return len(rows)
