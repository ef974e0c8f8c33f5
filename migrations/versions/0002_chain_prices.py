"""Chain prices: a price's quote, when it took effect, a feed's updatedAt, a sort key.

`at_ms` is the block's timestamp for chain prices and the publish time for manual ones;
a token's latest price orders by (`at_ms`, `block_number`, `log_index`, `id`) instead of
the highest id (workers commit blocks out of order). `price_key` sorts as text like the
prices do, for exact MAX and MIN on SQLite. Existing rows are filled in.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from indexer.exact import sort_key

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prices") as batch:
        batch.add_column(sa.Column("quote", sa.String(32), nullable=True))
        batch.add_column(sa.Column("at_ms", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("feed_updated_at", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("price_key", sa.String(46), nullable=True))
    _fill()
    with op.batch_alter_table("prices") as batch:
        batch.alter_column("at_ms", existing_type=sa.BigInteger, nullable=False)
        batch.alter_column("price_key", existing_type=sa.String(46), nullable=False)
        batch.drop_index("ix_prices_token_id")
        batch.create_index("ix_prices_token_order", ["token", "at_ms", "block_number", "log_index"])


def _fill() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT p.id, p.price, p.updated_at, b.timestamp FROM prices p "
            "LEFT JOIN blocks b ON b.number = p.block_number"
        )
    ).all()
    for id_, price, updated_at, block_time in rows:
        if block_time is not None:
            at_ms = int(block_time) * 1000
        else:
            if isinstance(updated_at, str):  # SQLite hands back text
                updated_at = datetime.fromisoformat(updated_at)
            if updated_at.tzinfo is None:
                updated_at = updated_at.replace(tzinfo=UTC)
            at_ms = int(updated_at.timestamp() * 1000)
        conn.execute(
            sa.text("UPDATE prices SET at_ms = :at, price_key = :key WHERE id = :id"),
            {"at": at_ms, "key": sort_key(Decimal(str(price))), "id": id_},
        )


def downgrade() -> None:
    with op.batch_alter_table("prices") as batch:
        batch.drop_index("ix_prices_token_order")
        batch.create_index("ix_prices_token_id", ["token", "id"])
        batch.drop_column("price_key")
        batch.drop_column("feed_updated_at")
        batch.drop_column("at_ms")
        batch.drop_column("quote")
