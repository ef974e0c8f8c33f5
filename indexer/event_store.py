"""Contract event rows, written in the block's own transaction (contract:
docs/contracts.md).

A block's logs are stored whatever the contracts file says; this writes the rows of
those that are events of its contracts, and the children its factories create. A child
found after some of its logs were stored (workers commit blocks out of order) has those
logs decoded when its creation commits, from the stored `logs` table, so no event of a
child is lost however the blocks arrive.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from indexer import json_text
from indexer import models as m
from indexer.blocks import BlockData
from indexer.bulk import insert_rows
from indexer.event_decoding import Child, EventDecoder
from indexer.events import BlockIndexed


def record_block_events(
    conn: Connection,
    decoder: EventDecoder,
    datas: Sequence[BlockData],
    chain: int,
    again: bool = False,
) -> list[dict[str, Any]]:
    """Store the contract events (and factory children) in `datas` inside the caller's
    transaction; returns every `contract_events` row written, in chain order (those of
    children found now, from blocks stored before, included). `again`: the blocks are
    stored already and may hold some of the rows (re-decoding: a piece run twice, or a
    child's logs decoded by an earlier piece); those are left as they are."""
    logs = [log for d in datas for log in d.logs]
    made = decoder.children(logs)
    if made:
        _insert_ignoring(conn, m.contract_children, [_child_row(chain, c) for c in made])
    children = _children_at(conn, decoder, chain, {log["address"] for log in logs})
    blocks = {d.number: (d.hash, int(d.block["timestamp"])) for d in datas}
    rows = decoder.rows(chain, logs, blocks, children)
    if again:
        _insert_ignoring(conn, m.contract_events, rows)
    else:  # these blocks' rows are new (a height stored again lost its rows first): bulk
        _insert_new(conn, rows)
    if made:
        # re-decoding reads only the logs that were ours before this piece: a child's
        # logs in it are read here, the blocks of this piece included
        late = _stored_logs_of(conn, decoder, chain, made, set() if again else set(blocks))
        _insert_ignoring(conn, m.contract_events, late)
        rows = sorted([*rows, *late], key=lambda r: (r["block_number"], r["log_index"]))
    return rows


def with_contract_events(
    written: Sequence[BlockIndexed], rows: Sequence[Mapping[str, Any]]
) -> list[BlockIndexed]:
    """`written` with each block's decoded events (`contractEvents`, for the stream).
    Events of blocks stored before (a child's, decoded when its creation committed) go
    with the last block written: that is where a web process meets them."""
    if not rows or not written:
        return list(written)
    numbers = {b.blockNumber for b in written}
    last = max(numbers)
    carried: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        number = row["block_number"] if row["block_number"] in numbers else last
        carried.setdefault(number, []).append(stream_event(row))
    return [
        dataclasses.replace(b, contractEvents=carried[b.blockNumber])
        if b.blockNumber in carried
        else b
        for b in written
    ]


def stream_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `contract_events` row as `block.indexed` carries it (docs/events.md)."""
    return {
        "contract": row["contract"],
        "event": row["event"],
        "address": row["address"],
        "blockNumber": row["block_number"],
        "blockHash": row["block_hash"],
        "blockTimestamp": row["block_timestamp"],
        "logIndex": row["log_index"],
        "transactionHash": row["transaction_hash"],
        "args": row["args"],
    }


def _child_row(chain: int, child: Child) -> dict[str, Any]:
    return {
        "chain_id": chain,
        "contract": child.contract,
        "address": child.address,
        "block_number": child.block_number,
        "log_index": child.log_index,
    }


def _children_at(
    conn: Connection, decoder: EventDecoder, chain: int, addresses: Iterable[str]
) -> dict[str, Child]:
    """The stored children among `addresses` (one indexed lookup; none without a
    factory in the file)."""
    wanted = sorted(a for a in addresses if not decoder.listed(a))
    if not decoder.has_factories or not wanted:
        return {}
    c = m.contract_children.c
    found: dict[str, Child] = {}
    for start in range(0, len(wanted), 500):
        for row in conn.execute(
            sa.select(c.contract, c.address, c.block_number, c.log_index).where(
                c.chain_id == chain, c.address.in_(wanted[start : start + 500])
            )
        ):
            found[row.address] = Child(row.contract, row.address, row.block_number, row.log_index)
    return found


def _stored_logs_of(
    conn: Connection,
    decoder: EventDecoder,
    chain: int,
    made: Sequence[Child],
    skip: set[int],
) -> list[dict[str, Any]]:
    """The events of the new children `made` in blocks stored before (not in `skip`,
    the blocks of this transaction, decoded already)."""
    logs, b = m.logs.c, m.blocks.c
    rows: list[dict[str, Any]] = []
    by_address = {child.address: child for child in made}
    for child in made:
        stored = conn.execute(
            sa.select(m.logs, b.hash, b.timestamp)
            .join(m.blocks, (b.chain_id == logs.chain_id) & (b.number == logs.block_number))
            .where(
                logs.chain_id == chain,
                logs.address == child.address,
                logs.block_number >= child.block_number,
            )
            .order_by(logs.block_number, logs.log_index)
        ).mappings()
        found = [dict(r) for r in stored if r["block_number"] not in skip]
        blocks = {int(r["block_number"]): (r["hash"], int(r["timestamp"])) for r in found}
        rows += decoder.rows(chain, found, blocks, by_address)
    return rows


def _insert_new(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk-insert event rows (COPY on PostgreSQL, whose JSONB column takes the JSON
    text)."""
    if conn.dialect.name == "postgresql":
        rows = [{**row, "args": json_text.dumps(row["args"])} for row in rows]
    insert_rows(conn, m.contract_events, rows)


def _insert_ignoring(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows`, skipping those whose primary key is stored already (a child named
    twice, a late decode that met a row written meanwhile)."""
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(table).on_conflict_do_nothing(), list(rows))
