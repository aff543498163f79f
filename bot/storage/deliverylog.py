"""The delivery log: each subscription's recent delivery attempts and what came of them
(sent with the message, filtered, retried, failed, disabled, a notice), to answer "why did
this item not show up?" in ``/feed log`` and ``feedhook status --subscription``.

Rows are written in the same transaction as the outcome they record; the hourly retention
job keeps the newest :data:`KEEP_PER_SUBSCRIPTION` of each subscription.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, delete, func, select

from bot.storage._common import MAX_ERROR_TEXT, StoreBase, _chunks, items, outbox, subscriptions
from bot.storage.db import DbConnection
from bot.storage.tables import DeliveryLogRow

delivery_log = DeliveryLogRow.__table__  # type: ignore[attr-defined]

KEEP_PER_SUBSCRIPTION = 50


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One delivery attempt as an admin reads it."""

    at: datetime
    outcome: str
    reason: str | None
    item_title: str | None
    item_link: str | None
    message_id: int | None
    channel_id: int | None
    guild_id: int | None

    @property
    def jump_url(self) -> str | None:
        """Discord's link to the message (needs the server and the channel)."""
        if self.message_id is None or self.channel_id is None or self.guild_id is None:
            return None
        return f"https://discord.com/channels/{self.guild_id}/{self.channel_id}/{self.message_id}"


class DeliveryLogMixin(StoreBase):
    """Writing and reading the delivery log."""

    async def _log_rows(
        self,
        conn: DbConnection,
        outbox_ids: Sequence[int],
        outcome: str,
        reason: str | None,
        now: datetime,
    ) -> None:
        """One log row per outbox row (its item and, once sent, its message)."""
        for chunk in _chunks(list(outbox_ids), 500):
            await conn.execute(
                _LOG_ROWS,
                {
                    "b_ids": list(chunk),
                    "b_outcome": outcome,
                    "b_reason": reason[:MAX_ERROR_TEXT] if reason else None,
                    "b_at": now,
                },
            )

    async def _log_subscriptions(
        self,
        conn: DbConnection,
        sub_ids: Sequence[int],
        outcome: str,
        reason: str | None,
        now: datetime,
        *,
        message_id: int | None = None,
    ) -> None:
        """One log row per subscription, about no item (disabled, a notice)."""
        if not sub_ids:
            return
        await conn.execute(
            delivery_log.insert(),
            [
                {
                    "subscription_id": sub_id,
                    "at": now,
                    "outcome": outcome,
                    "reason": reason[:MAX_ERROR_TEXT] if reason else None,
                    "message_id": message_id,
                }
                for sub_id in sub_ids
            ],
        )

    async def log_attempts(
        self, outbox_ids: Sequence[int], *, outcome: str, reason: str, now: datetime
    ) -> None:
        """Record attempts that changed nothing else (a 429 waited out)."""
        if outbox_ids:
            async with self.db.write() as conn:
                await self._log_rows(conn, outbox_ids, outcome, reason, now)

    async def log_notice(
        self,
        subscription_id: int,
        *,
        reason: str,
        message_id: int | None,
        channel_id: int | None,
        now: datetime,
    ) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                delivery_log.insert().values(
                    subscription_id=subscription_id,
                    at=now,
                    outcome="notice",
                    reason=reason[:MAX_ERROR_TEXT],
                    message_id=message_id,
                    channel_id=channel_id,
                )
            )

    async def delivery_log(
        self, subscription_id: int, *, limit: int = KEEP_PER_SUBSCRIPTION
    ) -> list[LogEntry]:
        """The subscription's newest attempts, newest first."""
        stmt = (
            select(
                delivery_log.c.at,
                delivery_log.c.outcome,
                delivery_log.c.reason,
                delivery_log.c.item_title,
                delivery_log.c.item_link,
                delivery_log.c.message_id,
                func.coalesce(
                    delivery_log.c.channel_id,
                    func.nullif(subscriptions.c.thread_id, 0),
                    subscriptions.c.channel_id,
                ),
                subscriptions.c.guild_id,
            )
            .join(subscriptions, subscriptions.c.id == delivery_log.c.subscription_id)
            .where(delivery_log.c.subscription_id == subscription_id)
            .order_by(delivery_log.c.id.desc())
            .limit(limit)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            LogEntry(
                at=r[0],
                outcome=str(r[1]),
                reason=r[2],
                item_title=r[3],
                item_link=r[4],
                message_id=int(r[5]) if r[5] is not None else None,
                channel_id=int(r[6]) if r[6] is not None else None,
                guild_id=int(r[7]) if r[7] is not None else None,
            )
            for r in rows
        ]

    async def prune_delivery_log(self, *, keep: int = KEEP_PER_SUBSCRIPTION) -> int:
        """Delete every subscription's log rows past its newest ``keep``."""
        ranked = select(
            delivery_log.c.id,
            func.row_number()
            .over(partition_by=delivery_log.c.subscription_id, order_by=delivery_log.c.id.desc())
            .label("position"),
        ).subquery()
        old = select(ranked.c.id).where(ranked.c.position > bindparam("b_keep", type_=Integer))
        async with self.db.write() as conn:
            result = await conn.execute(
                delete(delivery_log).where(delivery_log.c.id.in_(old)), {"b_keep": keep}
            )
        return int(result.rowcount or 0)


def _log_rows_stmt() -> Any:
    channel = func.coalesce(
        outbox.c.thread_id,
        func.nullif(subscriptions.c.thread_id, 0),
        subscriptions.c.channel_id,
    )
    source = (
        select(
            outbox.c.subscription_id,
            bindparam("b_at", type_=delivery_log.c.at.type),
            bindparam("b_outcome", type_=delivery_log.c.outcome.type),
            bindparam("b_reason", type_=delivery_log.c.reason.type),
            items.c.title,
            items.c.link,
            outbox.c.message_id,
            channel,
        )
        .join(items, items.c.id == outbox.c.item_id)
        .join(subscriptions, subscriptions.c.id == outbox.c.subscription_id)
        .where(outbox.c.id.in_(bindparam("b_ids", expanding=True)))
        .order_by(outbox.c.id)
    )
    return delivery_log.insert().from_select(
        [
            "subscription_id",
            "at",
            "outcome",
            "reason",
            "item_title",
            "item_link",
            "message_id",
            "channel_id",
        ],
        source,
    )


# Built once (why: see _common.py): it runs with every sent mark.
_LOG_ROWS = _log_rows_stmt()
