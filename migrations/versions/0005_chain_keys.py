"""Chains first-class: every table of chain data is keyed by `chain_id` first.

`blocks`, `transactions`, `logs`, `chainpulse_meta` and `failures` are rebuilt with
`chain_id` leading their primary key (and `blocks`' hash unique per chain); `prices`,
`reorgs` and `outbox` gain the column and indexes that lead with it. Existing rows are
given the chain id the database is bound to (`chainpulse_meta` key `chain_id`).

The rebuild copies each table (SQLite and PostgreSQL alike: create, copy, drop,
rename), holding an exclusive lock on it until the migration commits; docs/database.md
gives the time it takes for 100,000 blocks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op
from sqlalchemy.sql.schema import SchemaItem

from indexer.models import Uint256

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HASH = sa.String(66)
ADDRESS = sa.String(42)
TZ = sa.DateTime(timezone=True)
CHAIN_TABLES = ("blocks", "transactions", "logs", "reorgs", "failures")


def _blocks() -> list[SchemaItem]:
    return [
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("hash", HASH, nullable=False),
        sa.Column("parent_hash", HASH, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("tx_count", sa.Integer, nullable=False),
        sa.Column("gas_used", sa.BigInteger, nullable=False),
        sa.Column("gas_limit", sa.BigInteger, nullable=False),
        sa.Column("base_fee_per_gas", Uint256, nullable=True),
        sa.Column("miner", ADDRESS, nullable=False),
        sa.Column("indexed_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "number", name="pk_blocks"),
        sa.UniqueConstraint("chain_id", "hash", name="uq_blocks_chain_hash"),
    ]


def _transactions() -> list[SchemaItem]:
    return [
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("hash", HASH, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("transaction_index", sa.Integer, nullable=False),
        sa.Column("from_address", ADDRESS, nullable=False),
        sa.Column("to_address", ADDRESS, nullable=True),
        sa.Column("value", Uint256, nullable=False),
        sa.Column("gas", sa.BigInteger, nullable=False),
        sa.Column("gas_price", Uint256, nullable=True),
        sa.Column("nonce", sa.BigInteger, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=True),
        sa.Column("gas_used", sa.BigInteger, nullable=True),
        sa.Column("contract_address", ADDRESS, nullable=True),
        sa.PrimaryKeyConstraint("chain_id", "hash", name="pk_transactions"),
    ]


def _logs() -> list[SchemaItem]:
    return [
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("log_index", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("transaction_hash", HASH, nullable=False),
        sa.Column("address", ADDRESS, nullable=False),
        sa.Column("topic0", HASH, nullable=True),
        sa.Column("topic1", HASH, nullable=True),
        sa.Column("topic2", HASH, nullable=True),
        sa.Column("topic3", HASH, nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "block_number", "log_index", name="pk_logs"),
    ]


def _meta() -> list[SchemaItem]:
    return [
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "key", name="pk_chainpulse_meta"),
    ]


def _failures() -> list[SchemaItem]:
    return [
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("failed_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "number", name="pk_failures"),
    ]


REBUILT: dict[str, Callable[[], list[SchemaItem]]] = {
    "blocks": _blocks,
    "transactions": _transactions,
    "logs": _logs,
    "chainpulse_meta": _meta,
    "failures": _failures,
}
INDEXES = {
    "transactions": [
        ("ix_transactions_block_number", ["chain_id", "block_number"]),
        ("ix_transactions_from_address", ["chain_id", "from_address"]),
        ("ix_transactions_to_address", ["chain_id", "to_address"]),
    ],
    "logs": [("ix_logs_address_topic0", ["chain_id", "address", "topic0"])],
}


def upgrade() -> None:
    conn = op.get_bind()
    bound = conn.execute(
        sa.text("SELECT value FROM chainpulse_meta WHERE key = 'chain_id'")
    ).scalar_one_or_none()
    if bound is None:
        _refuse_unbound_rows(conn)
        # facts kept before any chain was bound belong to none: read again when needed
        conn.execute(sa.text("DELETE FROM chainpulse_meta"))
    chain = int(bound) if bound is not None else 0
    for name, columns in REBUILT.items():
        _rebuild(conn, name, columns(), chain)
    with op.batch_alter_table("prices") as batch:
        batch.add_column(sa.Column("chain_id", sa.BigInteger, nullable=True))
        batch.drop_index("ix_prices_block_number")
        batch.create_index("ix_prices_block_number", ["chain_id", "block_number"])
    conn.execute(
        sa.text("UPDATE prices SET chain_id = :chain WHERE block_number IS NOT NULL"),
        {"chain": chain},
    )
    with op.batch_alter_table("reorgs") as batch:
        batch.add_column(
            sa.Column("chain_id", sa.BigInteger, nullable=False, server_default=str(chain))
        )
    with op.batch_alter_table("reorgs") as batch:
        batch.alter_column("chain_id", existing_type=sa.BigInteger, server_default=None)
        batch.create_index("ix_reorgs_chain_ancestor", ["chain_id", "ancestor_number"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("chain_id", sa.BigInteger, nullable=True))


def _refuse_unbound_rows(conn: sa.Connection) -> None:
    """Chain rows in a database bound to no chain: which chain they came from is
    unknown (chainpulse binds before it writes any, so this is not its own doing)."""
    for table in CHAIN_TABLES:
        if conn.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None:  # noqa: S608
            raise RuntimeError(
                f"the table {table} has rows but the database is bound to no chain "
                "(chainpulse_meta has no key chain_id): insert the chain id the rows "
                "came from, e.g. INSERT INTO chainpulse_meta (key, value) "
                "VALUES ('chain_id', '1'), and upgrade again"
            )


def _rebuild(conn: sa.Connection, name: str, columns: list[SchemaItem], chain: int) -> None:
    """Create `name` anew with `columns` (chain_id first), copy its rows with `chain`,
    and put the copy in its place with its indexes."""
    copy = f"{name}_chained"
    op.create_table(copy, *columns)
    kept = [c.name for c in columns if isinstance(c, sa.Column) and c.name != "chain_id"]
    listed = ", ".join(f'"{c}"' for c in kept)
    conn.execute(
        sa.text(
            f'INSERT INTO "{copy}" (chain_id, {listed}) '  # noqa: S608 - our own names
            f'SELECT :chain, {listed} FROM "{name}"'
        ),
        {"chain": chain},
    )
    op.drop_table(name)
    op.rename_table(copy, name)
    for index, on in INDEXES.get(name, []):
        op.create_index(index, name, on)


def downgrade() -> None:
    raise RuntimeError(
        "0005 keys every table by chain and is not reversed: restore the backup taken "
        "before `chainpulse db upgrade` (docs/operations.md)"
    )
