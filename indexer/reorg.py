"""Reorgs: where the stored chain left the node's canonical chain, and its repair.

Invariant: the stored blocks are the node's canonical chain. Workers index blocks in
parallel, so this is kept by "every commit checks its parent" rather than by a single
sequencer:

1. Every block commit holds the block-commit lock (`Store.writing`) and checks its
   stored neighbours: the block below must be its parent, the block above must name it
   as parent, and no other block may sit at its height. A block that fails the check is
   refused with `LinkMismatch`; nothing is ever stored over.
2. Whoever meets the mismatch first (a worker's commit, a backfill job next to the head,
   or the follower comparing hashes) calls `repair`. It takes the same lock, asks the
   node for its canonical hashes over the last `MAX_REORG_DEPTH` stored heights, and in
   one transaction deletes every stored block the node no longer has (with its
   transactions, logs and prices), records the reorg in `reorgs`, writes
   `block.reorged` to the outbox and then indexes the node's blocks at those heights,
   whose `block.indexed` entries therefore follow it on the stream.
3. A stale worker (one that read a block before the reorg) can still commit an orphan
   when neither neighbour is stored yet. The orphan cannot stay: its height's
   neighbours are filled in eventually (the follower enqueues every height and sweeps
   for gaps), and their commit check refuses to link to it, which triggers 2; the
   follower also compares the stored tip with the node's after every new head. Once
   the stored range is contiguous and its tip is the node's block, induction over
   parent hashes proves every stored block canonical.

Repairs are serialised with commits by the lock, so two workers that meet the same
reorg repair it once: the second finds nothing to do, re-reads its blocks and stores
them. A reorg reaching below the floor (deeper than `MAX_REORG_DEPTH` from the stored
tip, or below the node's `finalized` block) is not repaired: `repair` records a halt
in `chainpulse_meta` (key `halted`), the follower stops advancing, and `chainpulse
status` and `/readyz` report it until an operator clears it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TypedDict

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from indexer import models as m
from indexer import price_store
from indexer.blocks import fetch
from indexer.errors import BlockNotFound, ReorgTooDeep
from indexer.events import BlockRef, BlockReorged, BlockSource
from indexer.finality import KEY as FINALITY_KEY
from indexer.rpc import Node
from indexer.store import Store

log = logging.getLogger(__name__)

HALT_KEY = "halted"  # chainpulse_meta: JSON {reason, detectedAt, floor, orphans}


class HaltJson(TypedDict):
    reason: str
    detectedAt: str
    floor: int | None
    orphans: list[int]


@dataclass(frozen=True)
class Halt:
    """Why indexing stopped: a reorg reaching below `floor`, the lowest height a repair
    may change. Stored as JSON in `chainpulse_meta` (key `halted`)."""

    reason: str
    detected_at: str  # ISO 8601, UTC
    floor: int | None = None
    orphans: tuple[int, ...] = ()  # stored heights the node no longer has (the first 64)

    @classmethod
    def now(cls, reason: str, floor: int | None = None, orphans: Iterable[int] = ()) -> Halt:
        return cls(reason, datetime.now(UTC).isoformat(), floor, tuple(sorted(orphans)[:64]))

    def as_json(self) -> HaltJson:
        return {
            "reason": self.reason,
            "detectedAt": self.detected_at,
            "floor": self.floor,
            "orphans": list(self.orphans),
        }

    def dump(self) -> str:
        return json.dumps(self.as_json())

    @classmethod
    def load(cls, text: str) -> Halt:
        value = json.loads(text)
        return cls(
            reason=str(value.get("reason", "unknown")),
            detected_at=str(value.get("detectedAt", "")),
            floor=value.get("floor"),
            orphans=tuple(int(n) for n in value.get("orphans", ())),
        )


@dataclass(frozen=True)
class Plan:
    """What a repair changes: `removed` are stored orphans (ascending heights), `added`
    the node's blocks at those heights (where the node has one)."""

    ancestor: BlockRef
    removed: list[BlockRef]
    added: list[BlockRef]


def plan_repair(
    stored: Mapping[int, str], canonical: Mapping[int, str | None], floor: int
) -> Plan | None:
    """Compare `stored` hashes with the node's `canonical` ones (None above its head).

    `canonical` must cover every height from `floor - 1` to the highest stored one.
    Returns None when every stored block is canonical. Raises ReorgTooDeep when an
    orphan sits below `floor`, the lowest height a reorg may change.
    """
    orphans = sorted(n for n, h in stored.items() if canonical.get(n) != h)
    if not orphans:
        return None
    first = orphans[0]
    if first < floor:
        raise ReorgTooDeep(
            f"stored block {first} ({stored[first]}) is no longer canonical, "
            f"but reorgs may only change blocks from {floor} up"
        )
    ancestor = first - 1
    while canonical.get(ancestor) is None and ancestor >= floor:
        ancestor -= 1  # the node's chain is now shorter than the stored one
    ancestor_hash = canonical.get(ancestor)
    if ancestor_hash is None:
        raise ReorgTooDeep(f"the node has no block at or above {floor - 1} to re-attach to")
    removed = [BlockRef(n, stored[n]) for n in orphans]
    added = [BlockRef(n, h) for n in orphans if (h := canonical.get(n)) is not None]
    return Plan(BlockRef(ancestor, ancestor_hash), removed, added)


def repair(
    store: Store,
    node: Node,
    max_depth: int,
    *,
    near: Iterable[int] = (),
    finalized: int | None = None,
    claim: Callable[[Connection], None] | None = None,
    source: BlockSource = "head",
) -> BlockReorged | None:
    """Make the stored chain the node's again; returns the reorg, or None if none.

    Checks the stored heights from `max_depth` below the stored tip up to the tip, and
    those around `near` (where a mismatch was met). Everything happens in one write
    transaction holding the block-commit lock: orphans and their rows are deleted, a
    `reorgs` row and `block.reorged` are written, then the node's blocks from the common
    ancestor + 1 up to the highest removed height are indexed with their
    `block.indexed`. `claim(conn)` runs first in that transaction: the follower's
    fencing check (`follower.fence.fencing`), which raises to abort the repair when the
    follower's token is stale.

    Raises ReorgTooDeep after recording a halt when the reorg reaches below the floor,
    and at once while a halt is recorded.
    """
    too_deep: ReorgTooDeep | None = None
    event: BlockReorged | None = None
    store.prepare_prices(node)  # the re-read blocks are priced
    with store.writing() as conn:
        if claim is not None:
            claim(conn)
        halt = read_halt(store, conn)
        if halt is not None:
            raise ReorgTooDeep(f"indexing is halted: {halt.reason}")
        top = store.top(conn)
        if top is None:
            return None
        floor = max(top[0] - max_depth + 1, 0)
        if finalized is not None:
            floor = max(floor, finalized + 1)
        lo = max(floor - 1, 0)
        extra = {h for n in near for h in (n - 1, n, n + 1) if 0 <= h < lo}
        stored = _stored(conn, store.chain, lo, top[0], extra)
        heights = sorted(set(range(lo, top[0] + 1)) | extra)
        canonical: dict[int, str | None] = dict(node.block_hashes(heights))
        try:
            plan = plan_repair(stored, canonical, floor)
        except ReorgTooDeep as exc:
            too_deep = exc
            plan = None
            orphans = [n for n, h in stored.items() if canonical.get(n) != h]
            _write_halt(store, conn, str(exc), floor, orphans)
        if plan is not None:
            event = _apply(store, node, conn, plan, canonical, source, lo, top[0])
    if too_deep is not None:
        log.critical("reorg deeper than allowed; indexing halted: %s", too_deep)
        raise too_deep
    if event is not None:
        log.warning(
            "reorg of depth %d at %d (%s) repaired",
            event.depth,
            event.commonAncestor.number,
            event.commonAncestor.hash,
        )
    return event


def _stored(conn: Connection, chain: int, lo: int, hi: int, extra: set[int]) -> dict[int, str]:
    where: sa.ColumnElement[bool] = m.blocks.c.number.between(lo, hi)
    if extra:
        where = sa.or_(where, m.blocks.c.number.in_(sorted(extra)))
    rows = conn.execute(
        sa.select(m.blocks.c.number, m.blocks.c.hash).where(m.blocks.c.chain_id == chain, where)
    )
    return {int(n): str(h) for n, h in rows}


def _apply(
    store: Store,
    node: Node,
    conn: Connection,
    plan: Plan,
    canonical: Mapping[int, str | None],
    source: BlockSource,
    lo: int,
    hi: int,
) -> BlockReorged:
    last = max((ref.number for ref in plan.added), default=plan.ancestor.number)
    span = list(range(plan.ancestor.number + 1, last + 1))
    datas = fetch(node, span) if span else []
    for data in datas:
        if canonical.get(data.number) not in (None, data.hash):
            raise BlockNotFound(f"block {data.number} changed during the reorg repair; retrying")
    removed_heights = [ref.number for ref in plan.removed]
    chain = store.chain
    removed_prices = price_store.priced_at(conn, chain, removed_heights)
    store.delete_heights(conn, removed_heights)
    event = BlockReorged(
        depth=len(plan.removed),
        commonAncestor=plan.ancestor,
        removed=plan.removed,
        added=plan.added,
        chainId=chain,
    )
    conn.execute(
        m.reorgs.insert().values(
            chain_id=chain,
            detected_at=datetime.now(UTC),
            depth=event.depth,
            ancestor_number=plan.ancestor.number,
            ancestor_hash=plan.ancestor.hash,
            old_hashes=json.dumps([asdict(r) for r in plan.removed]),
            new_hashes=json.dumps([asdict(r) for r in plan.added]),
        )
    )
    store.add_to_outbox(conn, event)
    saved = store.save_in(conn, datas, source)
    # Tokens whose updates went with the orphans and that the new blocks do not price
    # again: announce the price now valid, after the reorg on the stream.
    repriced = {p.token for p in saved.prices}
    gone = {t: s for t, s in removed_prices.items() if t not in repriced}
    store.add_to_outbox(conn, *price_store.restore(conn, chain, gone, event.id))
    # A stale orphan may have taken over a transaction row that a canonical block shares
    # (the upsert moves it); deleting the orphan then left that block short of it.
    short = store.incomplete_blocks(conn, lo, hi)
    if short:
        store.upsert_transactions(conn, fetch(node, short))
    return event


# Halt ---------------------------------------------------------------------------------


def _write_halt(
    store: Store, conn: Connection, reason: str, floor: int, orphans: list[int]
) -> None:
    halt = Halt.now(f"reorg deeper than allowed: {reason}", floor, orphans)
    store.set_meta(conn, HALT_KEY, halt.dump())


def read_halt(store: Store, conn: Connection | None = None) -> Halt | None:
    """The recorded halt, or None.

    `/readyz` and `chainpulse status` report it; while it is set the follower does not
    advance and no repair runs.
    """
    value = store.get_meta(HALT_KEY, conn)
    return None if value is None else Halt.load(value)


def halt_in(conn: Connection, chain: int) -> Halt | None:
    """`read_halt` for callers holding only a Connection (the realtime server's /readyz)."""
    value = conn.execute(
        sa.select(m.meta.c.value).where(m.meta.c.chain_id == chain, m.meta.c.key == HALT_KEY)
    ).scalar_one_or_none()
    return None if value is None else Halt.load(value)


def clear_halt(store: Store) -> None:
    """Let indexing resume after an operator has dealt with a too-deep reorg; the
    recorded finality marks go too (they may be another chain's, or a restarted
    chain's), and the follower reads them again."""
    with store.writing() as conn:
        store.set_meta(conn, HALT_KEY, None)
        store.set_meta(conn, FINALITY_KEY, None)
