"""Writing indexed blocks, and the facts `chainpulse status` reads back.

Invariants kept here:
- A block, its transactions and its logs are written in one transaction, together
  with the outbox entry that announces them (so the announcement cannot be lost).
- Block commits are serialised (PostgreSQL advisory lock, SQLite's write lock), and each
  checks that the stored block below links to it by hash: a mismatch is a reorg and is
  refused here, never stored over.
- Writing a block that is already stored with the same hash changes nothing unless
  forced. A different hash at the same height is a reorg too: it is refused here
  (LinkMismatch) and replaced through `indexer.reorg.repair`, which asks the node which
  of the two is canonical, records the reorg and announces it before the new block.
- A transaction hash is unique: when a reorg moves a transaction into another block,
  its row moves with it (upsert), so deleting the orphan's rows cannot lose it.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from indexer import models as m
from indexer import proxies
from indexer.blocks import BlockData
from indexer.bulk import insert_rows
from indexer.contracts import Contract
from indexer.db import failure_reason, make_engine, write_options
from indexer.errors import (
    ChainMismatch,
    ChainpulseError,
    ConfigError,
    DatabaseBusy,
    RetryableError,
)
from indexer.event_decoding import EventDecoder
from indexer.event_store import record_block_events, with_contract_events
from indexer.events import BlockIndexed, BlockSource, Entry, Event, Pending, PriceUpdated, encode
from indexer.price_decoding import Pricer
from indexer.price_store import manual_price, record_block_prices
from indexer.queries import PRIMARY_KEY, primary_chain
from indexer.source_metadata import resolve_all
from indexer.sources import PriceSources, SourcesError
from indexer.urls import mask_url

if TYPE_CHECKING:
    from indexer.rpc import Node

# PostgreSQL advisory lock for a chain's block commits: (COMMIT_LOCK_KEY, the chain's id
# folded into 32 bits)
COMMIT_LOCK_KEY = 0x63686E70


log = logging.getLogger(__name__)


class MetadataPending(RetryableError):
    """Blocks cannot be priced until the price sources' metadata is read (the node has
    not answered yet): the job is retried."""


class LinkMismatch(RetryableError):
    """A stored neighbour does not link by hash to the block being written: a reorg.

    `number` is the height of the block being written.
    """

    def __init__(self, number: int, detail: str) -> None:
        super().__init__(f"block {number} does not link to the stored chain: {detail}")
        self.number = number


@dataclass(frozen=True)
class Failure:
    """A block whose job failed for good, and the first line of why."""

    number: int
    error: str
    failed_at: datetime  # UTC


@dataclass(frozen=True)
class Summary:
    """What is stored: the range, its gaps (the first 100), the outbox backlog."""

    lowest: int | None
    highest: int | None
    count: int
    gaps: list[tuple[int, int]]  # inclusive runs of missing heights between stored ones
    outbox: int  # events waiting for Redis
    chain_id: int | None


@dataclass(frozen=True)
class Saved:
    """What one write transaction stored: its events, and their outbox rows to deliver."""

    events: list[BlockIndexed]
    outbox: list[Pending]
    prices: list[PriceUpdated]


class Store:
    """The database. With `sources`, blocks are stored with the prices their logs carry
    (`indexer.price_store`), in the same transaction."""

    def __init__(
        self,
        url: str,
        engine: Engine | None = None,
        sources: PriceSources | None = None,
        chain_id: int | None = None,
        contracts: Sequence[Contract] = (),
    ) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self.dialect = self.engine.dialect.name
        self.sources = sources
        # the chain whose rows this store reads and writes: given, set by `bind_chain`,
        # or (for readers) the database's primary chain
        self.chain_id = chain_id
        self._primary: int | None = None  # as last read, for a store given no chain
        # a file that gives every value prices at once; `prepare_prices` still checks it
        # against the chain before the first block this process indexes
        self.pricer = Pricer(sources) if sources is not None and sources.resolved else None
        self._checked = sources is None
        # the contracts file's contracts on this chain, decoded as blocks are stored
        self.decoder = EventDecoder(contracts)
        # the proxies' aggregators as last read
        self._histories: dict[str, tuple[tuple[int, str], ...]] | None = None

    def prepare_prices(self, node: Node) -> None:
        """Make sure every price source's metadata is known (docs/prices.md): from what
        this database kept, else read from `node` and kept. Raises SourcesError when the
        chain contradicts the file, and the node's RetryableErrors when it is away."""
        if self._checked or self.sources is None:
            return
        prefix = "price_source:"
        known: dict[str, str] = {}
        try:
            with self.errors(), self.engine.connect() as conn:
                known = self.meta_under(conn, prefix)
        except ChainpulseError as exc:  # no schema yet, or away: read them from the node
            log.info("no price source metadata kept in the database (%s)", exc)
        head = node.head() if any(s.kind == "chainlink" for s in self.sources.sources) else None
        resolved, new = resolve_all(node, self.sources, known)
        try:
            with self.errors(), self.engine.begin() as conn:
                histories = self.meta_under(conn, proxies.PREFIX)
                for address, facts in new.items():
                    self.set_meta(conn, prefix + address, facts)
                for source in proxies.proxied(resolved):
                    assert source.address is not None
                    if source.address not in histories:  # followed from the read on
                        first = proxies.Following(source.aggregators, head).dump()
                        self.set_meta(conn, proxies.PREFIX + source.address, first)
                        histories[source.address] = first
            resolved = proxies.with_history(resolved, histories)
        except sa.exc.IntegrityError:
            # another process kept them first (the same facts): its history is read at
            # the first commit
            log.info("the price sources' metadata was kept by another process")
        except ChainpulseError as exc:
            log.warning("could not keep the price sources' metadata in the database: %s", exc)
        self.use_sources(resolved)
        self._checked = True

    def use_sources(self, sources: PriceSources) -> None:
        """Price with `sources` (resolved) from now on."""
        self.sources = sources
        self.pricer = Pricer(sources)
        self._histories = None

    def prepare_prices_at_start(self, node: Node) -> None:
        """`prepare_prices` as a process starts: SourcesError (the chain contradicts the
        file) stops it; a node or database that does not answer only delays pricing
        (every block job tries again, and waits until the metadata is known)."""
        try:
            self.prepare_prices(node)
        except SourcesError:
            raise
        except ChainpulseError as exc:
            log.warning(
                "price sources wait for their metadata (token0, token1, decimals): %s; "
                "read again with each block job",
                exc,
            )

    def dispose(self) -> None:
        self.engine.dispose()

    def check_schema(self) -> None:
        """Raise ConfigError, naming the fix, when the migrations were never applied."""
        with self.errors():
            if not sa.inspect(self.engine).has_table("blocks"):
                raise ConfigError(
                    f"the database at {mask_url(self.url)} has no schema: "
                    "run `chainpulse db upgrade`"
                )

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn database failures into chainpulse errors: a missing schema is fatal
        (ConfigError), a lost connection or a busy lock retryable (DatabaseBusy)."""
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.ProgrammingError) as exc:
            reason = failure_reason(exc)
            where = f"database at {mask_url(self.url)}"
            if isinstance(exc, sa.exc.ProgrammingError) or "no such table" in reason:
                raise ConfigError(
                    f"{where} failed: {reason} (is the schema there? run `chainpulse db upgrade`)"
                ) from exc
            raise DatabaseBusy(f"{where} failed: {reason}") from exc

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction holding this chain's block-commit lock (PostgreSQL: one
        advisory lock per chain, so chains commit side by side)."""
        with self._writing(self.chain) as conn:
            yield conn

    @contextlib.contextmanager
    def _writing(self, chain: int) -> Iterator[Connection]:
        with self.errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**write_options())
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:k, :chain)"),
                        {"k": COMMIT_LOCK_KEY, "chain": _lock_part(chain)},
                    )
                yield conn

    # Chain identity -------------------------------------------------------------------

    @property
    def chain(self) -> int:
        """The chain id this store's rows carry. Unbound, the database's primary chain;
        0 (no chain's id) for a database bound to none, which holds no chain rows."""
        if self.chain_id is not None:
            return self.chain_id
        return self._read_primary()

    def _read_primary(self) -> int:
        """The database's primary chain, read until it is bound (0 before)."""
        if self._primary is None:
            self._primary = self.primary_chain()
        return self._primary or 0

    def _bound(self) -> None:
        """Refuse to write chain rows for no chain."""
        if not self.chain:
            raise ConfigError(
                f"the database at {mask_url(self.url)} is bound to no chain yet: "
                "a process binds it (Store.bind_chain) before it writes blocks"
            )

    def primary_chain(self) -> int | None:
        """The chain this database was first bound to, or None before any."""
        with self.errors(), self.engine.connect() as conn:
            return primary_chain(conn)

    def bind_chain(self, chain_id: int, primary: int | None = None) -> None:
        """Use `chain_id` from now on. The database is bound to its primary chain on
        first use (`primary`, by default `chain_id` itself: a single-chain deployment);
        ChainMismatch when it is bound to another."""
        primary = chain_id if primary is None else primary
        with self._writing(primary) as conn:
            stored = primary_chain(conn)
            if stored is None:
                conn.execute(
                    m.meta.insert().values(chain_id=primary, key=PRIMARY_KEY, value=str(primary))
                )
            elif stored != primary and primary == chain_id:
                raise ChainMismatch(
                    f"the database at {mask_url(self.url)} indexes chain {stored}, "
                    f"but the node serves chain {chain_id}"
                )
            elif stored != primary:
                raise ChainMismatch(
                    f"the database at {mask_url(self.url)} indexes chain {stored} as its "
                    f"primary, but the chains file names chain {primary} first"
                )
        self.chain_id = chain_id

    # Writes ----------------------------------------------------------------------------

    def save_blocks(
        self, datas: Sequence[BlockData], source: BlockSource, force: bool = False
    ) -> Saved:
        """Store `datas` (ascending heights) in one transaction, with their events.

        Blocks already stored with the same hash are skipped unless `force`. Raises
        LinkMismatch, writing nothing, when a block does not link to a stored neighbour
        or another block is stored at its height (a reorg: see `indexer.reorg`).
        """
        with self.writing() as conn:
            return self.save_in(conn, datas, source, force)

    def save_in(
        self, conn: Connection, datas: Sequence[BlockData], source: BlockSource, force: bool = False
    ) -> Saved:
        """`save_blocks` inside the caller's write transaction (see `writing`)."""
        written: list[BlockIndexed] = []
        numbers = [d.number for d in datas]
        if not numbers:
            return Saved(written, [], [])
        self._bound()
        lo, hi = min(numbers), max(numbers)
        rows = conn.execute(
            sa.select(m.blocks.c.number, m.blocks.c.hash, m.blocks.c.parent_hash).where(
                m.blocks.c.chain_id == self.chain, m.blocks.c.number.between(lo - 1, hi + 1)
            )
        ).all()
        stored = {int(n): str(h) for n, h, _ in rows}
        parents = {int(n): str(p) for n, _, p in rows}
        existing = set(stored)
        todo: list[BlockData] = []
        for data in datas:
            n = data.number
            if stored.get(n) == data.hash and not force:
                continue
            if n in existing and stored[n] != data.hash:
                raise LinkMismatch(n, f"hash {data.hash}, stored {n} is {stored[n]}")
            below = stored.get(n - 1)
            if below is not None and below != data.parent_hash:
                raise LinkMismatch(n, f"parent {data.parent_hash}, stored {n - 1} is {below}")
            above = parents.get(n + 1)
            if above is not None and above != data.hash and n + 1 not in numbers:
                raise LinkMismatch(n, f"hash {data.hash}, stored {n + 1} links to {above}")
            stored[n] = data.hash
            parents[n] = data.parent_hash
            todo.append(data)
            written.append(
                BlockIndexed(
                    blockNumber=n,
                    blockHash=data.hash,
                    parentHash=data.parent_hash,
                    blockTimestamp=int(data.block["timestamp"]),
                    transactions=len(data.transactions),
                    source=source,
                    gasUsed=int(data.block["gas_used"]),
                    chainId=self.chain,
                )
            )
        replaced = [d.number for d in todo if d.number in existing]
        if replaced:
            self._delete_heights(conn, replaced)
        self._insert(conn, todo)
        if self.sources is not None and self.pricer is None:
            raise MetadataPending("the price sources' metadata is not read yet")
        self._follow_proxies(conn)
        priced = record_block_prices(conn, self.pricer, todo, self.chain) if self.pricer else []
        if self.decoder:
            decoded = record_block_events(conn, self.decoder, todo, self.chain)
            written = with_contract_events(written, decoded)
        outbox = self.add_to_outbox(conn, *written, *priced)
        conn.execute(
            m.failures.delete().where(
                m.failures.c.chain_id == self.chain, m.failures.c.number.in_(numbers)
            )
        )
        return Saved(written, outbox, priced)

    def _follow_proxies(self, conn: Connection) -> None:
        """Price with the aggregators the follower recorded for each proxy source, as
        they are in this transaction (it holds the block-commit lock, as the follower
        does when it records a switch: indexer.proxies)."""
        if self.sources is None or not proxies.proxied(self.sources):
            return
        histories = self.meta_under(conn, proxies.PREFIX)
        followed = {k: proxies.Following.load(v).history for k, v in histories.items()}
        if followed != self._histories:  # a switch, not another sweep's `checkedAt`
            self.use_sources(proxies.with_history(self.sources, histories))
            self._histories = followed

    def _insert(self, conn: Connection, datas: Sequence[BlockData]) -> None:
        """Bulk-insert blocks, their transactions (upserted by hash) and their logs."""
        if not datas:
            return
        chain = self.chain
        insert_rows(conn, m.blocks, [{**d.block, "chain_id": chain} for d in datas])
        self._insert_transactions(conn, datas)
        insert_rows(conn, m.logs, [{**log, "chain_id": chain} for d in datas for log in d.logs])

    def _insert_transactions(self, conn: Connection, datas: Sequence[BlockData]) -> None:
        """Plain bulk insert, falling back to the upsert when a hash is already stored
        (a stale orphan holding it): the fast path for backfills, where none is."""
        if self.dialect != "postgresql":
            self.upsert_transactions(conn, datas)
            return
        try:
            with conn.begin_nested():
                insert_rows(conn, m.transactions, self._transaction_rows(datas))
        except sa.exc.IntegrityError:
            self.upsert_transactions(conn, datas)

    def _delete_heights(self, conn: Connection, numbers: Sequence[int]) -> None:
        """Remove the blocks at `numbers` and every row derived from them."""
        chain = self.chain
        for table, column in (
            (m.logs, m.logs.c.block_number),
            (m.transactions, m.transactions.c.block_number),
            (m.prices, m.prices.c.block_number),
            (m.contract_events, m.contract_events.c.block_number),
            (m.contract_children, m.contract_children.c.block_number),
            (m.blocks, m.blocks.c.number),
        ):
            conn.execute(table.delete().where(table.c.chain_id == chain, column.in_(numbers)))

    def delete_heights(self, conn: Connection, numbers: Sequence[int]) -> None:
        """Remove the blocks at `numbers` and everything derived from them (caller's tx)."""
        if numbers:
            self._delete_heights(conn, list(numbers))

    def upsert_transactions(self, conn: Connection, datas: Sequence[BlockData]) -> None:
        """Write `datas`' transaction rows again (a stale orphan may have taken them over)."""
        txs = self._transaction_rows(datas)
        if txs:
            insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            stmt = insert(m.transactions)
            key = ("chain_id", "hash")
            columns = {c.name: stmt.excluded[c.name] for c in m.transactions.c if c.name not in key}
            conn.execute(stmt.on_conflict_do_update(index_elements=key, set_=columns), txs)

    def _transaction_rows(self, datas: Sequence[BlockData]) -> list[dict[str, object]]:
        chain = self.chain
        return [{**tx, "chain_id": chain} for d in datas for tx in d.transactions]

    def incomplete_blocks(self, conn: Connection, first: int, last: int) -> list[int]:
        """Stored heights in [first, last] with fewer transaction rows than their `tx_count`.

        A transaction row belongs to one block; when an orphan that re-used a hash is
        deleted, the canonical block that also holds it comes up short here.
        """
        chain = self.chain
        counted = (
            sa.select(m.transactions.c.block_number, sa.func.count().label("n"))
            .where(
                m.transactions.c.chain_id == chain,
                m.transactions.c.block_number.between(first, last),
            )
            .group_by(m.transactions.c.block_number)
            .subquery()
        )
        rows = conn.execute(
            sa.select(m.blocks.c.number)
            .select_from(m.blocks.outerjoin(counted, counted.c.block_number == m.blocks.c.number))
            .where(
                m.blocks.c.chain_id == chain,
                m.blocks.c.number.between(first, last),
                sa.func.coalesce(counted.c.n, 0) < m.blocks.c.tx_count,
            )
            .order_by(m.blocks.c.number)
        )
        return [int(n) for (n,) in rows]

    def top(self, conn: Connection | None = None) -> tuple[int, str] | None:
        """The highest stored block as (number, hash), or None on an empty database."""
        q = (
            sa.select(m.blocks.c.number, m.blocks.c.hash)
            .where(m.blocks.c.chain_id == self.chain)
            .order_by(m.blocks.c.number.desc())
        )
        if conn is not None:
            row = conn.execute(q.limit(1)).first()
        else:
            with self.errors(), self.engine.connect() as c:
                row = c.execute(q.limit(1)).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def get_meta(self, key: str, conn: Connection | None = None) -> str | None:
        """This chain's `chainpulse_meta` entry `key`."""
        q = sa.select(m.meta.c.value).where(m.meta.c.chain_id == self.chain, m.meta.c.key == key)
        if conn is not None:
            return conn.execute(q).scalar_one_or_none()
        with self.errors(), self.engine.connect() as c:
            return c.execute(q).scalar_one_or_none()

    def meta_under(self, conn: Connection, prefix: str) -> dict[str, str]:
        """The `chainpulse_meta` entries whose key starts with `prefix`, by the rest of
        their key (`price_source:<address>` facts, `aggregators:<proxy>` histories)."""
        rows = conn.execute(
            sa.select(m.meta.c.key, m.meta.c.value).where(
                m.meta.c.chain_id == self.chain, m.meta.c.key.startswith(prefix)
            )
        )
        return {key[len(prefix) :]: value for key, value in rows}

    def set_meta(self, conn: Connection, key: str, value: str | None) -> None:
        """Set (or with None, remove) this chain's `chainpulse_meta` entry, inside the
        caller's transaction."""
        chain = self.chain
        conn.execute(m.meta.delete().where(m.meta.c.chain_id == chain, m.meta.c.key == key))
        if value is not None:
            conn.execute(m.meta.insert().values(chain_id=chain, key=key, value=value))

    def record_manual_price(
        self,
        token: str,
        price: Decimal | str,
        quote: str | None = None,
        sources: PriceSources | None = None,
    ) -> PriceUpdated:
        """Store a manual price for `token` (`chainpulse price set`) and queue its
        `price.updated` event; BadPrice names what is wrong with the input."""
        event, row = manual_price(token, price, quote, sources=sources)
        with self.writing() as conn:
            conn.execute(m.prices.insert().values(**row))
            self.add_to_outbox(conn, event)
        return event

    def add_to_outbox(self, conn: Connection, *events: Event) -> list[Pending]:
        """Queue `events` for the stream, inside the caller's transaction; returns the
        outbox rows, ids included, in the order of `events`."""
        if not events:
            return []
        now = datetime.now(UTC)
        entries = [encode(event) for event in events]
        deliveries = [uuid.uuid4().hex for _ in events]
        rows = [
            {
                "chain_id": getattr(event, "chainId", None),
                "event_id": entry.id,
                "delivery_id": delivery,
                "type": entry.type,
                "data": entry.data,
                "created_at": now,
            }
            for event, entry, delivery in zip(events, entries, deliveries, strict=True)
        ]
        ids = conn.execute(
            m.outbox.insert().returning(m.outbox.c.id, sort_by_parameter_order=True), rows
        ).scalars()
        return [
            Pending(int(id_), delivery, entry)
            for id_, delivery, entry in zip(ids, deliveries, entries, strict=True)
        ]

    def record_failure(self, numbers: Sequence[int], error: str) -> None:
        """Remember blocks whose job failed for good (shown by `chainpulse status`)."""
        now = datetime.now(UTC)
        self._bound()
        chain = self.chain
        with self.writing() as conn:
            conn.execute(
                m.failures.delete().where(
                    m.failures.c.chain_id == chain, m.failures.c.number.in_(list(numbers))
                )
            )
            conn.execute(
                m.failures.insert(),
                [
                    {"chain_id": chain, "number": n, "error": error[:2000], "failed_at": now}
                    for n in numbers
                ],
            )

    # Outbox -----------------------------------------------------------------------------

    def pending_outbox(self, limit: int = 500) -> list[Pending]:
        """The oldest `limit` outbox rows of this chain's stream, in commit order (the
        primary's include the rows of no chain: manual prices, and events written
        before chains)."""
        chain = self.chain
        mine = m.outbox.c.chain_id == chain
        if chain == self._read_primary():
            mine = sa.or_(mine, m.outbox.c.chain_id.is_(None))
        with self.errors(), self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(m.outbox).where(mine).order_by(m.outbox.c.id).limit(limit)
            )
            return [
                Pending(int(r.id), r.delivery_id, Entry(r.type, r.event_id, r.data)) for r in rows
            ]

    def delete_outbox(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self.errors(), self.engine.begin() as conn:
            conn.execute(m.outbox.delete().where(m.outbox.c.id.in_(list(ids))))

    # Reads --------------------------------------------------------------------------------

    def stored_hashes(self, first: int, last: int) -> dict[int, str]:
        with self.errors(), self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(m.blocks.c.number, m.blocks.c.hash).where(
                    m.blocks.c.chain_id == self.chain, m.blocks.c.number.between(first, last)
                )
            )
            return {int(n): str(h) for n, h in rows}

    def indexed_since(self, first: int, last: int, since: datetime) -> set[int]:
        """Heights in [first, last] whose stored block was written at or after `since`."""
        with self.errors(), self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(m.blocks.c.number).where(
                    m.blocks.c.chain_id == self.chain,
                    m.blocks.c.number.between(first, last),
                    m.blocks.c.indexed_at >= since,
                )
            )
            return {int(n) for (n,) in rows}

    def missing(self, first: int, last: int) -> list[int]:
        """Heights in [first, last] with no stored block, ascending."""
        present = self.stored_hashes(first, last)
        return [n for n in range(first, last + 1) if n not in present]

    def count_done(
        self, first: int, last: int, since: datetime, reindexed_only: bool = True
    ) -> tuple[int, int]:
        """(blocks stored in [first, last], blocks there that failed at or after `since`).

        With `reindexed_only`, only blocks indexed at or after `since` count as stored.
        """
        chain = self.chain
        with self.errors(), self.engine.connect() as conn:
            stored = sa.select(sa.func.count()).select_from(m.blocks)
            stored = stored.where(
                m.blocks.c.chain_id == chain, m.blocks.c.number.between(first, last)
            )
            if reindexed_only:
                stored = stored.where(m.blocks.c.indexed_at >= since)
            done = conn.execute(stored).scalar_one()
            failed = conn.execute(
                sa.select(sa.func.count())
                .select_from(m.failures)
                .where(
                    m.failures.c.chain_id == chain,
                    m.failures.c.number.between(first, last),
                    m.failures.c.failed_at >= since,
                )
            ).scalar_one()
        return int(done), int(failed)

    def failures(self, first: int | None = None, last: int | None = None) -> list[Failure]:
        with self.errors(), self.engine.connect() as conn:
            q = (
                sa.select(m.failures)
                .where(m.failures.c.chain_id == self.chain)
                .order_by(m.failures.c.number)
            )
            if first is not None and last is not None:
                q = q.where(m.failures.c.number.between(first, last))
            return [Failure(int(r.number), r.error, _utc(r.failed_at)) for r in conn.execute(q)]

    def summary(self) -> Summary:
        """This chain's lowest and highest stored block, count and gaps between them; the
        outbox backlog (all chains)."""
        chain = self.chain
        mine = m.blocks.c.chain_id == chain
        with self.errors(), self.engine.connect() as conn:
            lo, hi, count = conn.execute(
                sa.select(
                    sa.func.min(m.blocks.c.number), sa.func.max(m.blocks.c.number), sa.func.count()
                ).where(mine)
            ).one()
            following = sa.func.lead(m.blocks.c.number).over(order_by=m.blocks.c.number)
            inner = (
                sa.select(m.blocks.c.number.label("n"), following.label("nxt"))
                .where(mine)
                .subquery()
            )
            gaps = conn.execute(
                sa.select(inner.c.n + 1, inner.c.nxt - 1)
                .where(inner.c.nxt > inner.c.n + 1)
                .order_by(inner.c.n)
                .limit(100)
            ).all()
            outbox = conn.execute(sa.select(sa.func.count()).select_from(m.outbox)).scalar_one()
        return Summary(
            lowest=None if lo is None else int(lo),
            highest=None if hi is None else int(hi),
            count=int(count),
            gaps=[(int(a), int(b)) for a, b in gaps],
            outbox=int(outbox),
            chain_id=chain or None,
        )


def _lock_part(chain: int) -> int:
    """A chain id as the 32-bit second half of a PostgreSQL advisory lock key (two
    chains that fold to the same value only commit one after the other)."""
    return chain % 2**31


def _utc(moment: datetime) -> datetime:
    """SQLite returns stored UTC times without their zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
