"""Subscriptions: the ``[[feeds]]`` of the config file, the ones managed from
Discord, and disabling them when Discord says their webhook or channel is gone."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update

from bot.models import SubscriptionState, SubscriptionView, WebhookTarget
from bot.storage._common import (
    CONFIG_SYNC_LOCK,
    MAX_ERROR_TEXT,
    REMOVED_FROM_CONFIG,
    outbox,
    sources,
    subscriptions,
)
from bot.storage.deliverylog import DeliveryLogMixin
from bot.storage.items import FeedMeta, ItemsMixin
from bot.storage.sources import SourcesMixin

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfigFeed:
    url: str
    target: WebhookTarget
    backfill: int = 0
    options: Mapping[str, object] = field(default_factory=dict)


class SubscriptionsMixin(ItemsMixin, SourcesMixin, DeliveryLogMixin):
    """Subscription queries; a new one gets its source (``_ensure_source``) and its
    backfill queued (``_queue_backfill``) in the same transaction."""

    # -- subscriptions from the config file ----------------------------------------

    async def sync_config_feeds(self, feeds: Sequence[ConfigFeed], *, now: datetime) -> None:
        """Upsert ``[[feeds]]`` by (url, webhook); disable config subscriptions no longer listed.

        On PostgreSQL under an advisory lock: processes started together with one config
        would otherwise insert the same subscription at once and one would fail."""
        async with self.db.write() as conn:
            if self.db.dialect == "postgresql":
                await conn.execute(CONFIG_SYNC_LOCK)
            keep: set[int] = set()
            for feed in feeds:
                source_id = await self._ensure_source(conn, feed.url, now)
                target = feed.target
                thread = target.thread_id or 0
                existing = (
                    await conn.execute(
                        select(
                            subscriptions.c.id,
                            subscriptions.c.enabled,
                            subscriptions.c.disabled_reason,
                            subscriptions.c.origin,
                            subscriptions.c.webhook_token,
                        ).where(
                            subscriptions.c.source_id == source_id,
                            subscriptions.c.webhook_id == target.webhook_id,
                            subscriptions.c.thread_id == thread,
                        )
                    )
                ).first()
                if existing is None:
                    initialized = (
                        await conn.execute(
                            select(sources.c.initialized).where(sources.c.id == source_id)
                        )
                    ).scalar_one()
                    result = await conn.execute(
                        self._insert(subscriptions)
                        .values(
                            source_id=source_id,
                            webhook_id=target.webhook_id,
                            webhook_token=target.token,
                            thread_id=thread,
                            origin="config",
                            enabled=True,
                            paused=False,
                            backfill=feed.backfill,
                            options=dict(feed.options),
                            created_at=now,
                        )
                        .returning(subscriptions.c.id)
                    )
                    sub_id = int(result.scalar_one())
                    if initialized and feed.backfill:
                        await self._queue_backfill(conn, source_id, now)
                    # A new subscription on an idle source should poll now.
                    await conn.execute(
                        update(sources)
                        .where(sources.c.id == source_id, sources.c.next_poll_at > now)
                        .values(next_poll_at=now)
                    )
                else:
                    sub_id = int(existing[0])
                    values: dict[str, Any] = {
                        "webhook_token": target.token,
                        "options": dict(feed.options),
                    }
                    # Back in the file, or a new token for a webhook Discord refused:
                    # the admin fixed it, so try again.
                    if not existing[1] and (
                        existing[2] == REMOVED_FROM_CONFIG or existing[4] != target.token
                    ):
                        values.update(enabled=True, disabled_reason=None, disabled_at=None)
                    await conn.execute(
                        update(subscriptions).where(subscriptions.c.id == sub_id).values(**values)
                    )
                keep.add(sub_id)
            # Also the ones already disabled for another reason (a webhook Discord refused,
            # then replaced in the file): what status says of them must be that the file
            # no longer lists them, not advice about a webhook nobody uses any more.
            stale = select(subscriptions.c.id).where(
                subscriptions.c.origin == "config",
                or_(
                    subscriptions.c.enabled.is_(True),
                    subscriptions.c.disabled_reason.is_(None),
                    subscriptions.c.disabled_reason != REMOVED_FROM_CONFIG,
                ),
            )
            stale_ids = [int(r[0]) for r in await conn.execute(stale) if int(r[0]) not in keep]
            if stale_ids:
                await conn.execute(
                    update(subscriptions)
                    .where(subscriptions.c.id.in_(stale_ids))
                    .values(enabled=False, disabled_reason=REMOVED_FROM_CONFIG, disabled_at=now)
                )
                log.info(
                    "disabled subscriptions removed from the config file count=%d", len(stale_ids)
                )

    # -- what Discord's replies to deliveries tell us -------------------------------

    async def disable_webhook(
        self, webhook_id: int, *, reason: str, now: datetime | None = None
    ) -> list[int]:
        """Disable every subscription posting to ``webhook_id``; their queued rows stay
        (claimed ones go back to pending) so a re-enabled subscription resumes."""
        now = now or datetime.now(UTC)
        async with self.db.write() as conn:
            sub_ids = [
                int(r[0])
                for r in await conn.execute(
                    select(subscriptions.c.id).where(subscriptions.c.webhook_id == webhook_id)
                )
            ]
            if not sub_ids:
                return []
            newly = [
                int(r[0])
                for r in await conn.execute(
                    update(subscriptions)
                    .where(subscriptions.c.id.in_(sub_ids), subscriptions.c.enabled.is_(True))
                    .values(enabled=False, disabled_reason=reason[:MAX_ERROR_TEXT], disabled_at=now)
                    .returning(subscriptions.c.id)
                )
            ]
            await conn.execute(
                update(outbox)
                .where(outbox.c.subscription_id.in_(sub_ids), outbox.c.state == "sending")
                .values(state="pending", lease_until=None)
            )
            await self._log_subscriptions(conn, newly, "disabled", reason, now)
        return sub_ids

    async def learn_channel(self, subscription_id: int, channel_id: int) -> None:
        """Remember the channel a webhook posts to (Discord tells us in each reply)."""
        await self.db.write_one(_LEARN_CHANNEL, {"b_id": subscription_id, "b_channel": channel_id})

    # -- subscriptions managed from Discord ------------------------------------------

    async def guild_subscriptions(
        self, guild_id: int, *, channel_id: int | None = None, subscription_id: int | None = None
    ) -> list[SubscriptionView]:
        last_sent = (
            select(func.max(outbox.c.sent_at))
            .where(outbox.c.subscription_id == subscriptions.c.id)
            .scalar_subquery()
        )
        filtered = (
            select(func.count())
            .where(outbox.c.subscription_id == subscriptions.c.id, outbox.c.state == "filtered")
            .scalar_subquery()
        )
        stmt = (
            select(
                subscriptions.c.id,
                subscriptions.c.guild_id,
                subscriptions.c.channel_id,
                subscriptions.c.thread_id,
                subscriptions.c.webhook_id,
                sources.c.url,
                sources.c.title,
                subscriptions.c.enabled,
                subscriptions.c.paused,
                subscriptions.c.disabled_reason,
                sources.c.consecutive_failures,
                sources.c.failing_since,
                sources.c.last_error,
                sources.c.newest_item_at,
                last_sent,
                subscriptions.c.options,
                filtered,
            )
            .join(sources, sources.c.id == subscriptions.c.source_id)
            .where(subscriptions.c.guild_id == guild_id)
            .order_by(subscriptions.c.id)
        )
        if channel_id is not None:
            stmt = stmt.where(
                or_(
                    subscriptions.c.channel_id == channel_id,
                    subscriptions.c.thread_id == channel_id,
                )
            )
        if subscription_id is not None:
            stmt = stmt.where(subscriptions.c.id == subscription_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            SubscriptionView(
                id=int(r[0]),
                guild_id=r[1],
                channel_id=r[2],
                thread_id=int(r[3]) or None,
                webhook_id=int(r[4]),
                source_url=r[5],
                source_title=r[6],
                enabled=bool(r[7]),
                paused=bool(r[8]),
                disabled_reason=r[9],
                consecutive_failures=int(r[10]),
                failing_since=r[11],
                last_error=r[12],
                newest_item_at=r[13],
                last_delivery_at=r[14],
                options=dict(r[15] or {}),
                filtered=int(r[16] or 0),
            )
            for r in rows
        ]

    async def set_options(
        self, guild_id: int, subscription_id: int, options: Mapping[str, object]
    ) -> bool:
        """Replace a server's subscription's message settings; False if there is none."""
        result = await self.db.write_one(
            update(subscriptions)
            .where(subscriptions.c.id == subscription_id, subscriptions.c.guild_id == guild_id)
            .values(options=dict(options))
        )
        return bool(result.rowcount)

    async def guild_subscription_count(self, guild_id: int) -> int:
        async with self.db.read() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).where(subscriptions.c.guild_id == guild_id)
                    )
                ).scalar_one()
            )

    async def create_subscription(
        self,
        *,
        source_url: str,
        guild_id: int | None,
        channel_id: int | None,
        target: WebhookTarget,
        backfill: int,
        options: Mapping[str, object],
        min_interval: float,
        now: datetime,
        meta: FeedMeta | None = None,
        origin: str = "discord",
    ) -> int | None:
        """A subscription made from Discord (origin "discord", with its server and channel)
        or imported from an OPML file without one (origin "import", ``guild_id`` and
        ``channel_id`` None: a bare webhook). None when the target already has the source:
        the same webhook and thread, or (with a channel) the same channel and thread.

        Never origin "config": the config sync owns those rows (and disables the ones its
        file does not list)."""
        if origin == "config":
            raise ValueError("config subscriptions are made by sync_config_feeds")
        async with self.db.write() as conn:
            source_id = await self._ensure_source(conn, source_url, now)
            if meta is not None:
                # The command just read the feed: show its title before the first poll.
                await conn.execute(
                    update(sources)
                    .where(sources.c.id == source_id, sources.c.title.is_(None))
                    .values(
                        title=meta.title,
                        site_link=meta.site_link,
                        icon_url=meta.icon_url,
                        kind=meta.kind,
                    )
                )
            thread = target.thread_id or 0
            duplicate = (
                await conn.execute(
                    select(subscriptions.c.id).where(
                        *_same_target(source_id, target, guild_id, channel_id)
                    )
                )
            ).first()
            if duplicate is not None:
                return None
            # Sources added from Discord never poll more often than min_interval.
            await conn.execute(
                update(sources)
                .where(
                    sources.c.id == source_id,
                    or_(
                        sources.c.interval_seconds.is_(None),
                        sources.c.interval_seconds < int(min_interval),
                    ),
                )
                .values(interval_seconds=int(min_interval))
            )
            result = await conn.execute(
                self._insert(subscriptions)
                .values(
                    source_id=source_id,
                    webhook_id=target.webhook_id,
                    webhook_token=target.token,
                    thread_id=thread,
                    guild_id=guild_id,
                    channel_id=channel_id,
                    origin=origin,
                    enabled=True,
                    paused=False,
                    backfill=backfill,
                    options=dict(options),
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["source_id", "webhook_id", "thread_id"])
                .returning(subscriptions.c.id)
            )
            sub_id = result.scalar_one_or_none()
            if sub_id is None:
                return None
            initialized = (
                await conn.execute(select(sources.c.initialized).where(sources.c.id == source_id))
            ).scalar_one()
            if initialized and backfill:
                await self._queue_backfill(conn, source_id, now)
            await conn.execute(
                update(sources)
                .where(sources.c.id == source_id, sources.c.next_poll_at > now)
                .values(next_poll_at=now)
            )
        return int(sub_id)

    async def existing_subscription(
        self,
        source_url: str,
        *,
        target: WebhookTarget,
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> SubscriptionState | None:
        """The subscription that makes ``create_subscription`` of these arguments return
        None (the same webhook and thread, or the same channel and thread), if any;
        enabled or not. Reads only: a dry run asks this."""
        async with self.db.read() as conn:
            source_id = (
                await conn.execute(select(sources.c.id).where(sources.c.url == source_url))
            ).scalar_one_or_none()
            if source_id is None:
                return None
            row = (
                await conn.execute(
                    _SUBSCRIPTION_STATES.where(
                        *_same_target(int(source_id), target, guild_id, channel_id)
                    ).limit(1)
                )
            ).first()
        return None if row is None else _subscription_state(row)

    async def export_rows(
        self, guild_id: int | None = None
    ) -> list[tuple[int | None, int | None, int, str, str | None, str | None]]:
        """(channel_id, thread_id, webhook_id, source url, source title, site link) of every
        enabled subscription (paused ones too) of ``guild_id``, or of all when None, in
        the order they were made. Never the webhook token."""
        stmt = _EXPORT_ROWS
        if guild_id is not None:
            stmt = stmt.where(subscriptions.c.guild_id == guild_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            (
                None if r[0] is None else int(r[0]),
                int(r[1]) or None,
                int(r[2]),
                str(r[3]),
                r[4],
                r[5],
            )
            for r in rows
        ]

    async def guild_subscription(
        self, guild_id: int, subscription_id: int
    ) -> SubscriptionView | None:
        found = await self.guild_subscriptions(guild_id, subscription_id=subscription_id)
        return found[0] if found else None

    async def set_paused(
        self, guild_id: int, subscription_id: int, *, paused: bool, now: datetime | None = None
    ) -> bool:
        # Pausing again keeps the first pause's time: "paused since" means since then.
        since = (
            func.coalesce(
                subscriptions.c.paused_at,
                bindparam("b_now", now or datetime.now(UTC), type_=subscriptions.c.paused_at.type),
            )
            if paused
            else None
        )
        result = await self.db.write_one(
            update(subscriptions)
            .where(subscriptions.c.id == subscription_id, subscriptions.c.guild_id == guild_id)
            .values(paused=paused, paused_at=since)
        )
        return bool(result.rowcount)

    async def delete_subscription(self, guild_id: int, subscription_id: int) -> bool:
        # Its queued deliveries go with it (ON DELETE CASCADE).
        result = await self.db.write_one(
            delete(subscriptions).where(
                subscriptions.c.id == subscription_id, subscriptions.c.guild_id == guild_id
            )
        )
        return bool(result.rowcount)

    async def disable_where(
        self,
        *,
        reason: str,
        guild_id: int | None = None,
        channel_id: int | None = None,
        now: datetime | None = None,
    ) -> list[int]:
        """Disable the subscriptions of a deleted channel or a guild the bot left."""
        cond = []
        if guild_id is not None:
            cond.append(subscriptions.c.guild_id == guild_id)
        if channel_id is not None:
            cond.append(
                or_(
                    subscriptions.c.channel_id == channel_id,
                    subscriptions.c.thread_id == channel_id,
                )
            )
        if not cond:
            return []
        async with self.db.write() as conn:
            ids = [
                int(r[0])
                for r in await conn.execute(
                    select(subscriptions.c.id).where(*cond, subscriptions.c.enabled.is_(True))
                )
            ]
            if ids:
                now = now or datetime.now(UTC)
                await conn.execute(
                    update(subscriptions)
                    .where(subscriptions.c.id.in_(ids))
                    .values(
                        enabled=False,
                        disabled_reason=reason[:MAX_ERROR_TEXT],
                        disabled_at=now,
                    )
                )
                await self._log_subscriptions(conn, ids, "disabled", reason, now)
        return ids

    async def channel_webhook_ids(self, channel_id: int) -> list[int]:
        async with self.db.read() as conn:
            return [
                int(r[0])
                for r in await conn.execute(
                    select(subscriptions.c.webhook_id)
                    .where(
                        subscriptions.c.channel_id == channel_id, subscriptions.c.enabled.is_(True)
                    )
                    .distinct()
                )
            ]

    # -- reporting -----------------------------------------------------------------

    async def subscriptions_summary(self) -> list[dict[str, Any]]:
        """Every subscription's state, for status output and tests."""
        stmt = select(
            subscriptions.c.id,
            subscriptions.c.source_id,
            subscriptions.c.webhook_id,
            subscriptions.c.channel_id,
            subscriptions.c.enabled,
            subscriptions.c.paused,
            subscriptions.c.disabled_reason,
        ).order_by(subscriptions.c.id)
        async with self.db.read() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]

    async def subscription_states(self) -> list[SubscriptionState]:
        """Every subscription: where it posts, whether it runs and since when."""
        async with self.db.read() as conn:
            rows = (await conn.execute(_SUBSCRIPTION_STATES)).all()
        return [_subscription_state(r) for r in rows]


def _subscription_state(r: Any) -> SubscriptionState:
    return SubscriptionState(
        id=int(r[0]),
        source_id=int(r[1]),
        origin=str(r[2]),
        webhook_id=int(r[3]),
        thread_id=int(r[4]) or None,
        guild_id=r[5],
        channel_id=r[6],
        enabled=bool(r[7]),
        paused=bool(r[8]),
        disabled_reason=r[9],
        disabled_at=r[10],
        paused_at=r[11],
    )


def _same_target(
    source_id: int, target: WebhookTarget, guild_id: int | None, channel_id: int | None
) -> tuple[Any, ...]:
    """Conditions matching a subscription of ``source_id`` that already posts where a new
    one would: the same webhook and thread (``uq_subscription_target``), or, for one made
    in a channel, the same server, channel and thread (a new webhook in that channel)."""
    thread = target.thread_id or 0
    same = subscriptions.c.webhook_id == target.webhook_id
    if guild_id is not None and channel_id is not None:
        same = or_(
            same,
            and_(subscriptions.c.guild_id == guild_id, subscriptions.c.channel_id == channel_id),
        )
    return (subscriptions.c.source_id == source_id, subscriptions.c.thread_id == thread, same)


# -- statements built once (why: see _common.py) ---------------------------------------


_LEARN_CHANNEL = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("b_id"), subscriptions.c.channel_id.is_(None))
    .values(channel_id=bindparam("b_channel"))
)

_SUBSCRIPTION_STATES = select(
    subscriptions.c.id,
    subscriptions.c.source_id,
    subscriptions.c.origin,
    subscriptions.c.webhook_id,
    subscriptions.c.thread_id,
    subscriptions.c.guild_id,
    subscriptions.c.channel_id,
    subscriptions.c.enabled,
    subscriptions.c.paused,
    subscriptions.c.disabled_reason,
    subscriptions.c.disabled_at,
    subscriptions.c.paused_at,
).order_by(subscriptions.c.source_id, subscriptions.c.id)

_EXPORT_ROWS = (
    select(
        subscriptions.c.channel_id,
        subscriptions.c.thread_id,
        subscriptions.c.webhook_id,
        sources.c.url,
        sources.c.title,
        sources.c.site_link,
    )
    .join(sources, sources.c.id == subscriptions.c.source_id)
    .where(subscriptions.c.enabled.is_(True))
    .order_by(subscriptions.c.id)
)
