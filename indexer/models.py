"""The database schema (contract: docs/database.md).

The main tables hold the canonical chain only. Hashes and addresses are lowercase
`0x` hex. uint256 values are exact: NUMERIC(78,0) on PostgreSQL, TEXT on SQLite,
whose NUMERIC affinity would turn 2**256-1 into a float.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator, TypeEngine


class Uint256(TypeDecorator[int]):
    """An exact unsigned 256-bit integer: NUMERIC(78,0) on PostgreSQL, TEXT elsewhere."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(78, 0))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return Decimal(value)
        return str(int(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal of any scale: NUMERIC on PostgreSQL, TEXT elsewhere."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return Decimal(value)
        return format(Decimal(value), "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


HASH = String(66)
ADDRESS = String(42)
CHAIN = BigInteger  # an EIP-155 chain id: the first key of every table of chain data

metadata = MetaData()

blocks = Table(
    "blocks",
    metadata,
    Column("chain_id", CHAIN, nullable=False),
    Column("number", BigInteger, nullable=False, autoincrement=False),
    Column("hash", HASH, nullable=False),
    Column("parent_hash", HASH, nullable=False),
    Column("timestamp", BigInteger, nullable=False),  # block time, seconds
    Column("tx_count", Integer, nullable=False),
    Column("gas_used", BigInteger, nullable=False),
    Column("gas_limit", BigInteger, nullable=False),
    Column("base_fee_per_gas", Uint256, nullable=True),
    Column("miner", ADDRESS, nullable=False),
    Column("indexed_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("chain_id", "number", name="pk_blocks"),
    # two chains may share hashes: two anvils started in the same second do
    UniqueConstraint("chain_id", "hash", name="uq_blocks_chain_hash"),
)

transactions = Table(
    "transactions",
    metadata,
    Column("chain_id", CHAIN, nullable=False),
    Column("hash", HASH, nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("transaction_index", Integer, nullable=False),
    Column("from_address", ADDRESS, nullable=False),
    Column("to_address", ADDRESS, nullable=True),
    Column("value", Uint256, nullable=False),
    Column("gas", BigInteger, nullable=False),
    Column("gas_price", Uint256, nullable=True),
    Column("nonce", BigInteger, nullable=False),
    Column("status", SmallInteger, nullable=True),  # receipt: 1 success, 0 reverted
    Column("gas_used", BigInteger, nullable=True),  # receipt
    Column("contract_address", ADDRESS, nullable=True),  # receipt: deployments only
    PrimaryKeyConstraint("chain_id", "hash", name="pk_transactions"),
    Index("ix_transactions_block_number", "chain_id", "block_number"),
    Index("ix_transactions_from_address", "chain_id", "from_address"),
    Index("ix_transactions_to_address", "chain_id", "to_address"),
)

logs = Table(
    "logs",
    metadata,
    Column("chain_id", CHAIN, nullable=False),
    Column("block_number", BigInteger, nullable=False, autoincrement=False),
    Column("log_index", Integer, nullable=False, autoincrement=False),
    Column("transaction_hash", HASH, nullable=False),
    Column("address", ADDRESS, nullable=False),
    Column("topic0", HASH, nullable=True),
    Column("topic1", HASH, nullable=True),
    Column("topic2", HASH, nullable=True),
    Column("topic3", HASH, nullable=True),
    Column("data", Text, nullable=False),
    PrimaryKeyConstraint("chain_id", "block_number", "log_index", name="pk_logs"),
    Index("ix_logs_address_topic0", "chain_id", "address", "topic0"),
)

# One row per price update. `at_ms` is when the price took effect (the block's
# timestamp for chain prices, the publish time for manual ones): a token's latest price
# is its row with the highest (`at_ms`, `block_number`, `log_index`, `id`), see
# `indexer.queries.PRICE_ORDER`. `price_key` sorts as text like the prices do
# (`indexer.exact.sort_key`), for exact MAX and MIN on SQLite's text column.
# Token names are unique across the deployment (a token is priced by one chain's
# source), so a token's rows are found by token; `chain_id` is null for manual prices.
prices = Table(
    "prices",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("chain_id", CHAIN, nullable=True),
    Column("token", String(32), nullable=False),
    Column("price", ExactDecimal, nullable=False),
    Column("block_number", BigInteger, nullable=True),  # null for manual prices
    Column("log_index", Integer, nullable=True),
    Column("source", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),  # when it was stored
    Column("quote", String(32), nullable=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("feed_updated_at", BigInteger, nullable=True),  # a feed's `updatedAt`, seconds
    Column("price_key", String(46), nullable=False),
    # the row repeats the last good price: the source would not publish now (its reason)
    Column("stale", Boolean, nullable=False, server_default=false()),
    Column("stale_reason", String(32), nullable=True),
    Index("ix_prices_token_order", "token", "at_ms", "block_number", "log_index"),
    Index("ix_prices_block_number", "chain_id", "block_number"),
)

reorgs = Table(
    "reorgs",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("chain_id", CHAIN, nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("depth", Integer, nullable=False),
    Column("ancestor_number", BigInteger, nullable=False),
    Column("ancestor_hash", HASH, nullable=False),
    Column("old_hashes", Text, nullable=False),  # JSON list of {number, hash}
    Column("new_hashes", Text, nullable=False),  # JSON list of {number, hash}
    Index("ix_reorgs_chain_ancestor", "chain_id", "ancestor_number"),
)

# One row per log decoded as an event of a contract of the contracts file
# (docs/contracts.md): its arguments in `args` (JSON: exact values as strings), and the
# value of its first, second and third indexed argument, normalised, in `indexed_1..3`
# so that filtering by one is an index lookup on both databases (an expression index on
# a JSON path is not one SQLite can use from SQLAlchemy's rendering of it).
contract_events = Table(
    "contract_events",
    metadata,
    Column("chain_id", CHAIN, nullable=False),
    Column("block_number", BigInteger, nullable=False, autoincrement=False),
    Column("log_index", Integer, nullable=False, autoincrement=False),
    Column("block_hash", HASH, nullable=False),
    Column("block_timestamp", BigInteger, nullable=False),
    Column("transaction_hash", HASH, nullable=False),
    Column("address", ADDRESS, nullable=False),
    Column("contract", String(32), nullable=False),
    Column("event", Text, nullable=False),  # its key: the name, or the signature if overloaded
    Column("signature", Text, nullable=False),
    Column("args", JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    Column("indexed_1", Text, nullable=True),
    Column("indexed_2", Text, nullable=True),
    Column("indexed_3", Text, nullable=True),
    PrimaryKeyConstraint("chain_id", "block_number", "log_index", name="pk_contract_events"),
    Index("ix_contract_events_event", "chain_id", "contract", "event", "block_number"),
    *(
        Index(
            f"ix_contract_events_indexed_{i}",
            "chain_id",
            "contract",
            "event",
            f"indexed_{i}",
            "block_number",
            # partial: the many events without that argument cost no index entry
            postgresql_where=text(f"indexed_{i} IS NOT NULL"),
            sqlite_where=text(f"indexed_{i} IS NOT NULL"),
        )  # fmt: skip
        for i in (1, 2, 3)
    ),
)

# The children of the contracts file's factories: each address a factory's event named,
# from the block of that event on.
contract_children = Table(
    "contract_children",
    metadata,
    Column("chain_id", CHAIN, nullable=False),
    Column("contract", String(32), nullable=False),
    Column("address", ADDRESS, nullable=False),
    Column("block_number", BigInteger, nullable=False),
    Column("log_index", Integer, nullable=False),
    PrimaryKeyConstraint("chain_id", "contract", "address", name="pk_contract_children"),
    Index("ix_contract_children_address", "chain_id", "address"),
    Index("ix_contract_children_block", "chain_id", "block_number"),
)

# Key/value facts about each chain this database indexes (a follower's start, a halt,
# the price sources' metadata); the key `chain_id` under the primary chain binds the
# database to it.
meta = Table(
    "chainpulse_meta",
    metadata,
    Column("chain_id", CHAIN, nullable=False),
    Column("key", String(64), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("chain_id", "key", name="pk_chainpulse_meta"),
)

# Events written in the same transaction as the change they describe; a relay
# appends them to the Redis stream and deletes them (at-least-once delivery).
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("chain_id", CHAIN, nullable=True),  # the stream it goes to; null: the primary's
    Column("event_id", String(255), nullable=False),  # ids are at most 200 (events.py)
    Column("delivery_id", String(32), nullable=False),  # random; makes re-delivery idempotent
    Column("type", String(32), nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Blocks whose job failed for good; cleared when the block is indexed.
failures = Table(
    "failures",
    metadata,
    Column("chain_id", CHAIN, nullable=False),
    Column("number", BigInteger, nullable=False, autoincrement=False),
    Column("error", Text, nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("chain_id", "number", name="pk_failures"),
)
