"""Notices posted into a subscription's channel about its source (failing for long,
working again, turned stale), claimed in the database so that a restart or a second
process never posts one twice.

A claim is one ``UPDATE ... RETURNING`` whose ``WHERE`` re-checks the condition: of two
processes racing, PostgreSQL lets one update the row and the other then finds it no
longer matching.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, true, update

from bot.models import WebhookTarget
from bot.storage._common import StoreBase, sources, subscriptions

# At most one "still failing" notice per subscription in this long.
NOTICE_EVERY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class NoticeTarget:
    """A subscription owed a notice, with what the notice says about its source."""

    subscription_id: int
    target: WebhookTarget
    channel_id: int | None
    origin: str
    source_url: str
    source_title: str | None
    failing_since: datetime | None
    last_error: str | None
    newest_item_at: datetime | None
    options: Mapping[str, object]


_ACTIVE = (subscriptions.c.enabled.is_(True), subscriptions.c.paused.is_(False))


class NoticesMixin(StoreBase):
    async def claim_failure_notices(
        self, *, now: datetime, notify_after: timedelta
    ) -> list[NoticeTarget]:
        """Subscriptions whose source has failed for longer than ``notify_after`` and that
        were not told so in the last day; each claimed (``failing_notice_at`` = now)."""
        failing_long = select(sources.c.id).where(
            sources.c.failing_since.is_not(None), sources.c.failing_since <= now - notify_after
        )
        stmt = (
            update(subscriptions)
            .where(
                *_ACTIVE,
                subscriptions.c.source_id.in_(failing_long),
                (subscriptions.c.failing_notice_at.is_(None))
                | (subscriptions.c.failing_notice_at <= now - NOTICE_EVERY),
            )
            .values(failing_notice_at=now, failing_noticed=True)
            .returning(subscriptions.c.id)
        )
        return await self._claimed(stmt)

    async def claim_recovery_notices(self) -> list[NoticeTarget]:
        """Subscriptions told their source fails, whose source works again."""
        working = select(sources.c.id).where(sources.c.failing_since.is_(None))
        stmt = (
            update(subscriptions)
            .where(
                *_ACTIVE,
                subscriptions.c.failing_noticed.is_(True),
                subscriptions.c.source_id.in_(working),
            )
            .values(failing_noticed=False, failing_notice_at=None)
            .returning(subscriptions.c.id)
        )
        return await self._claimed(stmt)

    async def claim_stale_notices(
        self, stale_sources: Collection[int], *, now: datetime
    ) -> list[NoticeTarget]:
        """Subscriptions of the stale sources not yet told; subscriptions of sources that
        are not stale any more are made ready to be told again (no notice)."""
        stale = sorted(stale_sources)
        async with self.db.write() as conn:
            await conn.execute(
                update(subscriptions)
                .where(
                    subscriptions.c.stale_notice_at.is_not(None),
                    subscriptions.c.source_id.not_in(stale),
                )
                .values(stale_notice_at=None)
            )
        if not stale:
            return []
        stmt = (
            update(subscriptions)
            .where(
                *_ACTIVE,
                subscriptions.c.stale_notice_at.is_(None),
                subscriptions.c.source_id.in_(stale),
            )
            .values(stale_notice_at=now)
            .returning(subscriptions.c.id)
        )
        return await self._claimed(stmt)

    async def release_notice(self, notice: NoticeTarget, kind: str) -> None:
        """A notice that could not be posted: undo its claim, so the next look tries again."""
        undo: dict[str, dict[str, Any]] = {
            "failing": {"failing_notice_at": None},
            "recovered": {"failing_noticed": True},
            "stale": {"stale_notice_at": None},
        }
        values = undo[kind]
        await self.db.write_one(
            update(subscriptions)
            .where(subscriptions.c.id == notice.subscription_id)
            .values(**values)
        )

    async def _claimed(self, stmt: Any) -> list[NoticeTarget]:
        async with self.db.write() as conn:
            ids = [int(r[0]) for r in await conn.execute(stmt)]
            if not ids:
                return []
            rows = (await conn.execute(_notice_targets(ids))).all()
        return [
            NoticeTarget(
                subscription_id=int(r[0]),
                target=WebhookTarget(int(r[1]), str(r[2]), int(r[3]) or None),
                channel_id=r[4],
                origin=str(r[5]),
                source_url=str(r[6]),
                source_title=r[7],
                failing_since=r[8],
                last_error=r[9],
                newest_item_at=r[10],
                options=dict(r[11] or {}),
            )
            for r in rows
        ]


def _notice_targets(ids: Sequence[int]) -> Any:
    return (
        select(
            subscriptions.c.id,
            subscriptions.c.webhook_id,
            subscriptions.c.webhook_token,
            subscriptions.c.thread_id,
            subscriptions.c.channel_id,
            subscriptions.c.origin,
            sources.c.url,
            sources.c.title,
            sources.c.failing_since,
            sources.c.last_error,
            sources.c.newest_item_at,
            subscriptions.c.options,
        )
        .join(sources, sources.c.id == subscriptions.c.source_id)
        .where(subscriptions.c.id.in_(list(ids)), true())
        .order_by(subscriptions.c.id)
    )
