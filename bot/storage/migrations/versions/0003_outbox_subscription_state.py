"""outbox (subscription_id, state) index: claims read a subscription's queued rows
without walking its history of sent ones

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_subscription_state", "outbox", ["subscription_id", "state"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_subscription_state", table_name="outbox")
