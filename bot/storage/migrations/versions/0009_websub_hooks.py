"""sources.hub_url, topic_url, push_until: the WebSub hub a source announces and until
when it pushes; websub: each source's subscription at its hub; hooks: inbound webhook
endpoints (their tokens hashed, their per-minute rate counters)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hub_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("topic_url", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("push_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
    op.create_table(
        "websub",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("callback_id", sa.Text(), nullable=False),
        sa.Column("hub_url", sa.Text(), nullable=False),
        sa.Column("topic_url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("pending_mode", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("requested_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("action_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_push_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("callback_id"),
        sa.UniqueConstraint("source_id"),
    )
    with op.batch_alter_table("websub", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_websub_action_at"), ["action_at"], unique=False)
    op.create_table(
        "hooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("origin", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("rate_window", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("rate_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )


def downgrade() -> None:
    # An older version would take the hooks' sources (hook:N) for feeds to poll.
    for statement in (
        "DELETE FROM delivery_log WHERE subscription_id IN (SELECT s.id FROM subscriptions s "
        "JOIN sources src ON src.id = s.source_id WHERE src.kind = 'hook')",
        "DELETE FROM outbox WHERE subscription_id IN (SELECT s.id FROM subscriptions s "
        "JOIN sources src ON src.id = s.source_id WHERE src.kind = 'hook')",
        "DELETE FROM subscriptions WHERE source_id IN (SELECT id FROM sources WHERE kind = 'hook')",
        "DELETE FROM items WHERE source_id IN (SELECT id FROM sources WHERE kind = 'hook')",
    ):
        op.execute(statement)
    op.drop_table("hooks")
    op.execute("DELETE FROM sources WHERE kind = 'hook'")
    with op.batch_alter_table("websub", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_websub_action_at"))
    op.drop_table("websub")
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_column("push_until")
        batch_op.drop_column("topic_url")
        batch_op.drop_column("hub_url")
