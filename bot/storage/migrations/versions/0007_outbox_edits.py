"""outbox.thread_id, outbox.edit_due_at: where each post went (a thread or forum post)
and when its message is due an edit, for subscriptions that follow the source's edits

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("thread_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("edit_due_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_index("ix_outbox_edit_due", ["edit_due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_edit_due")
        batch_op.drop_column("edit_due_at")
        batch_op.drop_column("thread_id")
