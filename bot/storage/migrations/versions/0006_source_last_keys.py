"""sources.last_keys: the item keys of the source's last recorded document, which
retention never prunes; outbox (item_id) index, which deleting items needs

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_keys", sa.JSON(), nullable=True))
    op.create_index("ix_outbox_item", "outbox", ["item_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_item", table_name="outbox")
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_column("last_keys")
