"""Stale prices: a row may repeat a token's last good price to say the source would
not publish now (`stale`, with `stale_reason`): a pool under its liquidity floor, a
feed older than its `max_age`, a derived price with a stale leg (docs/prices.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prices") as batch:
        batch.add_column(
            sa.Column("stale", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("stale_reason", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prices") as batch:
        batch.drop_column("stale_reason")
        batch.drop_column("stale")
