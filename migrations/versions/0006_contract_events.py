"""Contract events: `contract_events` (one row per decoded log, keyed by chain, block
and log index, with the indexed arguments in columns of their own) and
`contract_children` (the addresses the contracts file's factories created).
docs/contracts.md has the contract; new tables only, so the upgrade takes no lock on
the tables of before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

HASH = sa.String(66)
ADDRESS = sa.String(42)


def upgrade() -> None:
    op.create_table(
        "contract_events",
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("log_index", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("block_hash", HASH, nullable=False),
        sa.Column("block_timestamp", sa.BigInteger, nullable=False),
        sa.Column("transaction_hash", HASH, nullable=False),
        sa.Column("address", ADDRESS, nullable=False),
        sa.Column("contract", sa.String(32), nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("args", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("indexed_1", sa.Text, nullable=True),
        sa.Column("indexed_2", sa.Text, nullable=True),
        sa.Column("indexed_3", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("chain_id", "block_number", "log_index", name="pk_contract_events"),
    )
    op.create_index(
        "ix_contract_events_event",
        "contract_events",
        ["chain_id", "contract", "event", "block_number"],
    )
    for i in (1, 2, 3):
        op.create_index(
            f"ix_contract_events_indexed_{i}",
            "contract_events",
            ["chain_id", "contract", "event", f"indexed_{i}", "block_number"],
            postgresql_where=sa.text(f"indexed_{i} IS NOT NULL"),
            sqlite_where=sa.text(f"indexed_{i} IS NOT NULL"),
        )
    op.create_table(
        "contract_children",
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("contract", sa.String(32), nullable=False),
        sa.Column("address", ADDRESS, nullable=False),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("log_index", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "contract", "address", name="pk_contract_children"),
    )
    op.create_index("ix_contract_children_address", "contract_children", ["chain_id", "address"])
    op.create_index("ix_contract_children_block", "contract_children", ["chain_id", "block_number"])


def downgrade() -> None:
    op.drop_table("contract_children")
    op.drop_table("contract_events")
