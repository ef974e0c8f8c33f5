"""Room in `outbox.event_id`: 255 characters, for ids of at most 200 with a chain id in
front later. A price a reorg restores had an id holding the reorg's id and the price
(over 200 characters for a 40-digit price); ids now hold a digest instead.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column(
            "event_id", existing_type=sa.String(200), type_=sa.String(255), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column(
            "event_id", existing_type=sa.String(255), type_=sa.String(200), nullable=False
        )
