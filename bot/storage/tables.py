"""SQLModel tables. Nothing outside ``bot.storage`` imports this module.

Datetimes are stored as naive UTC (SQLite keeps no zone); the storage layer
converts at its boundary so every datetime outside it is aware UTC.
The Alembic migrations in ``migrations/versions`` must produce exactly these
tables: ``tests/test_storage.py`` compares them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, Column, Index, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel


class SourceRow(SQLModel, table=True):
    __tablename__ = "sources"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    kind: str = Field(default="feed", max_length=32)
    title: str | None = Field(default=None, sa_column=Column(Text))
    site_link: str | None = Field(default=None, sa_column=Column(Text))
    icon_url: str | None = Field(default=None, sa_column=Column(Text))
    interval_seconds: int | None = Field(default=None)
    etag: str | None = Field(default=None, sa_column=Column(Text))
    last_modified: str | None = Field(default=None, max_length=64)
    body_hash: str | None = Field(default=None, max_length=64)
    initialized: bool = Field(default=False)
    next_poll_at: datetime = Field(index=True)
    # Set while a poller works on the source; an expired claim is free again.
    claimed_until: datetime | None = Field(default=None)
    # The process (processes.id) holding the claim: when it dies, others free it at once.
    claimed_by: int | None = Field(default=None)
    last_polled_at: datetime | None = Field(default=None)
    last_success_at: datetime | None = Field(default=None)
    failing_since: datetime | None = Field(default=None)
    consecutive_failures: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    newest_item_at: datetime | None = Field(default=None)
    # The item keys and normalised links of the last document that brought something
    # to record: retention never prunes what they name (pruned, an item still in the
    # feed would be posted again).
    last_keys: list[str] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    created_at: datetime
    # WebSub (migration 0009): the hub and topic the source announces (HTTP Link headers
    # first, then the document's links), and until when a verified hub subscription
    # pushes its items (polls are then push_safety_interval apart).
    hub_url: str | None = Field(default=None, sa_column=Column(Text))
    topic_url: str | None = Field(default=None, sa_column=Column(Text))
    push_until: datetime | None = Field(default=None)


class SubscriptionRow(SQLModel, table=True):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("source_id", "webhook_id", "thread_id", name="uq_subscription_target"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="sources.id", index=True, ondelete="CASCADE")
    webhook_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    webhook_token: str = Field(sa_column=Column(Text, nullable=False))
    # 0 means "no thread": a NULL would let the unique constraint admit duplicates.
    thread_id: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    guild_id: int | None = Field(default=None, sa_column=Column(BigInteger, index=True))
    channel_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    origin: str = Field(default="config", max_length=16)
    enabled: bool = Field(default=True)
    paused: bool = Field(default=False)
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text))
    # Since when it is disabled / paused (NULL while enabled / running, and for rows
    # disabled before migration 0004, whose time nobody recorded).
    disabled_at: datetime | None = Field(default=None)
    paused_at: datetime | None = Field(default=None)
    backfill: int = Field(default=0)
    options: dict[str, object] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime
    # Notices posted into the channel about the source (migration 0008): the last one
    # saying it fails (at most one a day), whether a "working again" one is owed, and
    # the one saying it turned stale (cleared when it is not any more).
    failing_notice_at: datetime | None = Field(default=None)
    failing_noticed: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    stale_notice_at: datetime | None = Field(default=None)


class ItemRow(SQLModel, table=True):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("source_id", "item_key", name="uq_item_source_key"),
        Index("ix_items_source_link", "source_id", "link_norm"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="sources.id", ondelete="CASCADE")
    item_key: str = Field(max_length=512)
    link_norm: str | None = Field(default=None, sa_column=Column(Text))
    title: str = Field(sa_column=Column(Text, nullable=False))
    link: str | None = Field(default=None, sa_column=Column(Text))
    summary: str = Field(sa_column=Column(Text, nullable=False))
    author: str | None = Field(default=None, sa_column=Column(Text))
    published_at: datetime | None = Field(default=None)
    image_url: str | None = Field(default=None, sa_column=Column(Text))
    categories: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    first_seen_at: datetime
    # Item.social (a SocialPost as a JSON object) for posts of X, Bluesky, Mastodon.
    # (none_as_null: a plain item stores SQL NULL, not the JSON value null)
    social: dict[str, object] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("subscription_id", "item_id", name="uq_outbox_subscription_item"),
        Index("ix_outbox_due", "state", "next_attempt_at"),
        # Claims look for a subscription's pending / sending rows; without this they
        # walk every row it ever sent, and get slower for as long as the bot runs.
        Index("ix_outbox_subscription_state", "subscription_id", "state"),
        # Deleting an item (retention) looks for its deliveries (ON DELETE CASCADE and
        # the check that none still needs it): without this, a scan of the outbox each.
        Index("ix_outbox_item", "item_id"),
        # Edits due (follow_edits): nearly every row holds NULL, so the index stays small.
        Index("ix_outbox_edit_due", "edit_due_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: int = Field(foreign_key="subscriptions.id", ondelete="CASCADE")
    item_id: int = Field(foreign_key="items.id", ondelete="CASCADE")
    # pending -> sending (leased) -> sent | failed
    state: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime
    lease_until: datetime | None = Field(default=None)
    # The process (processes.id) whose sender holds the lease (see sources.claimed_by).
    claimed_by: int | None = Field(default=None)
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime
    sent_at: datetime | None = Field(default=None)
    # The thread the message went to (a thread subscription's, or the forum post it
    # opened): an edit of the message must name it.
    thread_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    # Set when the item's title or summary changed after it was posted to a
    # subscription that follows edits; cleared when the edit is done or moot.
    edit_due_at: datetime | None = Field(default=None)


class ProcessRow(SQLModel, table=True):
    """A running ``feedhook run``: what it does, and when it last said it was alive."""

    __tablename__ = "processes"

    id: int | None = Field(default=None, primary_key=True)
    host: str = Field(sa_column=Column(Text, nullable=False))
    pid: int
    roles: str = Field(max_length=64)  # "poller,delivery,bot"
    started_at: datetime
    heartbeat_at: datetime = Field(index=True)
    # holds the Discord gateway session (at most one live process at a time)
    gateway: bool = Field(default=False)


class DeliveryLogRow(SQLModel, table=True):
    """One delivery attempt of a subscription, kept to answer "why did this item not show
    up?" (the newest 50 per subscription are kept; retention prunes the rest)."""

    __tablename__ = "delivery_log"
    __table_args__ = (Index("ix_delivery_log_subscription", "subscription_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    subscription_id: int = Field(foreign_key="subscriptions.id", ondelete="CASCADE")
    at: datetime
    # sent, filtered, retried, failed, disabled, notice
    outcome: str = Field(max_length=16)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    # what the item was (items are pruned; the log outlives them)
    item_title: str | None = Field(default=None, sa_column=Column(Text))
    item_link: str | None = Field(default=None, sa_column=Column(Text))
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    # the channel or thread the message is in (a jump link needs it)
    channel_id: int | None = Field(default=None, sa_column=Column(BigInteger))


class WebSubRow(SQLModel, table=True):
    """One WebSub subscription of a source at its hub (at most one per source).

    ``pending_mode`` is set before a (un)subscribe request goes to the hub: the hub's
    verification GET is answered only while it matches. The row outlives its source's
    last subscription until the hub confirmed the unsubscribe (``source_id`` NULL once
    the source itself is gone)."""

    __tablename__ = "websub"

    id: int | None = Field(default=None, primary_key=True)
    source_id: int | None = Field(
        default=None, foreign_key="sources.id", ondelete="SET NULL", unique=True
    )
    # the opaque last segment of the callback URL ({public_url}/websub/{callback_id})
    callback_id: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    hub_url: str = Field(sa_column=Column(Text, nullable=False))
    topic_url: str = Field(sa_column=Column(Text, nullable=False))
    secret: str = Field(sa_column=Column(Text, nullable=False))
    # "subscribe" | "unsubscribe" while the hub has yet to verify; NULL otherwise
    pending_mode: str | None = Field(default=None, max_length=16)
    requested_at: datetime | None = Field(default=None)
    # the lease the hub granted ends then; NULL: never verified (or lapsed)
    expires_at: datetime | None = Field(default=None)
    # when the manager next looks at the row (renewal, retry, verification timeout)
    action_at: datetime = Field(index=True)
    failures: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_push_at: datetime | None = Field(default=None)
    created_at: datetime


class HookRow(SQLModel, table=True):
    """An inbound webhook endpoint, POST {public_url}/hooks/{token}: its items belong
    to the source ``hook:{id}``, posted to that source's subscriptions."""

    __tablename__ = "hooks"

    id: int | None = Field(default=None, primary_key=True)
    # sha256 hex of the token; the token itself is never stored
    token_hash: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    source_id: int | None = Field(default=None, foreign_key="sources.id", ondelete="CASCADE")
    template: str = Field(sa_column=Column(Text, nullable=False))
    origin: str = Field(default="discord", max_length=16)
    # the per-token rate counter: requests in the minute starting at rate_window
    rate_window: datetime | None = Field(default=None)
    rate_count: int = Field(default=0)
    created_at: datetime
