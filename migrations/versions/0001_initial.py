"""Initial schema: blocks, transactions, logs, prices, reorgs, meta, outbox, failures.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from indexer.models import ExactDecimal, Uint256

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

HASH = sa.String(66)
ADDRESS = sa.String(42)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "blocks",
        sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", HASH, nullable=False, unique=True),
        sa.Column("parent_hash", HASH, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("tx_count", sa.Integer, nullable=False),
        sa.Column("gas_used", sa.BigInteger, nullable=False),
        sa.Column("gas_limit", sa.BigInteger, nullable=False),
        sa.Column("base_fee_per_gas", Uint256, nullable=True),
        sa.Column("miner", ADDRESS, nullable=False),
        sa.Column("indexed_at", TZ, nullable=False),
    )
    op.create_table(
        "transactions",
        sa.Column("hash", HASH, primary_key=True),
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
    )
    op.create_index("ix_transactions_block_number", "transactions", ["block_number"])
    op.create_index("ix_transactions_from_address", "transactions", ["from_address"])
    op.create_index("ix_transactions_to_address", "transactions", ["to_address"])
    op.create_table(
        "logs",
        sa.Column("block_number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("log_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("transaction_hash", HASH, nullable=False),
        sa.Column("address", ADDRESS, nullable=False),
        sa.Column("topic0", HASH, nullable=True),
        sa.Column("topic1", HASH, nullable=True),
        sa.Column("topic2", HASH, nullable=True),
        sa.Column("topic3", HASH, nullable=True),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_logs_address_topic0", "logs", ["address", "topic0"])
    op.create_table(
        "prices",
        sa.Column("id", SERIAL, primary_key=True),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("price", ExactDecimal, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("log_index", sa.Integer, nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_prices_token_id", "prices", ["token", "id"])
    op.create_index("ix_prices_block_number", "prices", ["block_number"])
    op.create_table(
        "reorgs",
        sa.Column("id", SERIAL, primary_key=True),
        sa.Column("detected_at", TZ, nullable=False),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("ancestor_number", sa.BigInteger, nullable=False),
        sa.Column("ancestor_hash", HASH, nullable=False),
        sa.Column("old_hashes", sa.Text, nullable=False),
        sa.Column("new_hashes", sa.Text, nullable=False),
    )
    op.create_table(
        "chainpulse_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", SERIAL, primary_key=True),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("delivery_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "failures",
        sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("failed_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "failures",
        "outbox",
        "chainpulse_meta",
        "reorgs",
        "prices",
        "logs",
        "transactions",
        "blocks",
    ):
        op.drop_table(table)
