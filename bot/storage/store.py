"""Every query feedhook runs. Nothing outside ``bot.storage`` touches SQL.

Hot paths (claiming due sources, recording poll outcomes, inserting items)
use SQLAlchemy Core statements: a cycle over thousands of sources must stay
well under a millisecond of CPU per source.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.models import FeedInfo, Item, SocialPost, SourceHealth, SubscriptionView, WebhookTarget
from bot.storage.db import Database
from bot.storage.tables import ItemRow, OutboxRow, SourceRow, SubscriptionRow

log = logging.getLogger(__name__)

sources = SourceRow.__table__  # type: ignore[attr-defined]
subscriptions = SubscriptionRow.__table__  # type: ignore[attr-defined]
items = ItemRow.__table__  # type: ignore[attr-defined]
outbox = OutboxRow.__table__  # type: ignore[attr-defined]

# Generous room for the longest plausible summary; render.py trims to Discord's limits.
MAX_STORED_SUMMARY = 16_000
MAX_ERROR_TEXT = 500


@dataclass(frozen=True, slots=True)
class DueSource:
    """A claimed source, with what polling it needs."""

    id: int
    url: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    initialized: bool
    interval_seconds: int | None
    consecutive_failures: int


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll changed on its source row (everything but new items)."""

    source_id: int
    polled_at: datetime
    next_poll_at: datetime
    ok: bool
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    keep_validators: bool = True  # False: store etag/last_modified/body_hash as given


@dataclass(frozen=True, slots=True)
class FeedMeta:
    title: str
    site_link: str | None
    icon_url: str | None
    kind: str


@dataclass(frozen=True, slots=True)
class ConfigFeed:
    url: str
    target: WebhookTarget
    backfill: int = 0
    options: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A claimed delivery: one item for one subscription."""

    id: int
    item: Item
    attempts: int
    created_at: datetime
    # Claimed before by a sender whose lease ran out: Discord may have the message.
    in_doubt: bool


@dataclass(frozen=True, slots=True)
class _Route:
    source_id: int
    target: WebhookTarget
    channel_id: int | None
    options: Mapping[str, object]
    feed: FeedInfo


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """Everything needed to post a subscription's next items, oldest first."""

    subscription_id: int
    target: WebhookTarget
    channel_id: int | None
    options: Mapping[str, object]
    feed: FeedInfo
    entries: tuple[OutboxEntry, ...]
    pending_total: int


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- sources -----------------------------------------------------------------

    async def add_source(self, url: str, *, now: datetime) -> int:
        """The id of the source with ``url``, created due now if absent."""
        async with self.db.write() as conn:
            return await self._ensure_source(conn, url, now)

    async def _ensure_source(self, conn: AsyncConnection, url: str, now: datetime) -> int:
        row = (await conn.execute(select(sources.c.id).where(sources.c.url == url))).first()
        if row is not None:
            return int(row[0])
        stmt = (
            self._insert(sources)
            .values(
                url=url,
                kind="feed",
                initialized=False,
                consecutive_failures=0,
                next_poll_at=now,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["url"])
        )
        await conn.execute(stmt)
        row = (await conn.execute(select(sources.c.id).where(sources.c.url == url))).one()
        return int(row[0])

    async def claim_due_sources(
        self, *, now: datetime, limit: int, lease: timedelta, exclude: Iterable[int] = ()
    ) -> list[DueSource]:
        """Claim up to ``limit`` due sources for ``lease``.

        Several processes may claim at once: on PostgreSQL, ``SKIP LOCKED``
        hands each row to one of them; a crashed poller's claim simply expires.
        """
        if limit <= 0:
            return []
        has_active = exists().where(
            and_(subscriptions.c.source_id == sources.c.id, subscriptions.c.enabled.is_(True))
        )
        due = (
            select(sources.c.id)
            .where(
                sources.c.next_poll_at <= now,
                or_(sources.c.claimed_until.is_(None), sources.c.claimed_until <= now),
                has_active,
            )
            .order_by(sources.c.next_poll_at)
            .limit(limit)
        )
        due = self._claimable(due, sources.c.id, exclude)
        stmt = (
            update(sources)
            .where(sources.c.id.in_(due.scalar_subquery()))
            .values(claimed_until=now + lease)
            .returning(
                sources.c.id,
                sources.c.url,
                sources.c.etag,
                sources.c.last_modified,
                sources.c.body_hash,
                sources.c.initialized,
                sources.c.interval_seconds,
                sources.c.consecutive_failures,
            )
        )
        async with self.db.write() as conn:
            rows = (await conn.execute(stmt)).all()
        return [DueSource(*row) for row in rows]

    async def release_claims(self) -> int:
        """Free every claim. Only for a process that knows it is the database's sole
        user (SQLite): claims left by a crash would otherwise hold sources until they expire."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(sources)
                .where(sources.c.claimed_until.is_not(None))
                .values(claimed_until=None)
            )
        return int(result.rowcount)

    async def record_outcomes(self, outcomes: Sequence[PollOutcome]) -> None:
        """Store many poll outcomes in one transaction (one executemany per shape)."""
        if not outcomes:
            return
        ok = [o for o in outcomes if o.ok]
        failed = [o for o in outcomes if not o.ok]
        async with self.db.write() as conn:
            if ok:
                await self._record_ok(conn, ok)
            if failed:
                await conn.execute(
                    update(sources)
                    .where(sources.c.id == bindparam("b_id"))
                    .values(
                        last_polled_at=bindparam("b_polled"),
                        next_poll_at=bindparam("b_next"),
                        claimed_until=None,
                        consecutive_failures=sources.c.consecutive_failures + 1,
                        failing_since=func.coalesce(sources.c.failing_since, bindparam("b_polled")),
                        last_error=bindparam("b_error"),
                    ),
                    [
                        {
                            "b_id": o.source_id,
                            "b_polled": o.polled_at,
                            "b_next": o.next_poll_at,
                            "b_error": (o.error or "unknown error")[:MAX_ERROR_TEXT],
                        }
                        for o in failed
                    ],
                )

    async def _record_ok(self, conn: AsyncConnection, ok: Sequence[PollOutcome]) -> None:
        health: dict[str, Any] = {
            "last_polled_at": bindparam("b_polled"),
            "last_success_at": bindparam("b_polled"),
            "next_poll_at": bindparam("b_next"),
            "claimed_until": None,
            "consecutive_failures": 0,
            "failing_since": None,
            "last_error": None,
        }
        keep = [o for o in ok if o.keep_validators]
        replace = [o for o in ok if not o.keep_validators]
        if keep:
            await conn.execute(
                update(sources).where(sources.c.id == bindparam("b_id")).values(**health),
                [
                    {"b_id": o.source_id, "b_polled": o.polled_at, "b_next": o.next_poll_at}
                    for o in keep
                ],
            )
        if replace:
            await conn.execute(
                update(sources)
                .where(sources.c.id == bindparam("b_id"))
                .values(
                    **health,
                    etag=bindparam("b_etag"),
                    last_modified=bindparam("b_lm"),
                    body_hash=bindparam("b_hash"),
                ),
                [
                    {
                        "b_id": o.source_id,
                        "b_polled": o.polled_at,
                        "b_next": o.next_poll_at,
                        "b_etag": o.etag,
                        "b_lm": o.last_modified,
                        "b_hash": o.body_hash,
                    }
                    for o in replace
                ],
            )

    async def move_source(self, source_id: int, new_url: str) -> bool:
        """Point a source at its permanent new URL; False if another source has it."""
        async with self.db.write() as conn:
            taken = (
                await conn.execute(select(sources.c.id).where(sources.c.url == new_url))
            ).first()
            if taken is not None:
                return False
            await conn.execute(update(sources).where(sources.c.id == source_id).values(url=new_url))
        return True

    # -- items ---------------------------------------------------------------------

    async def known_items(
        self, source_id: int, keys: Sequence[str], links: Sequence[str]
    ) -> tuple[set[str], set[str]]:
        """Which of ``keys`` and normalised ``links`` this source has already seen."""
        known_keys: set[str] = set()
        known_links: set[str] = set()
        async with self.db.read() as conn:
            for chunk in _chunks(keys, 500):
                result = await conn.execute(
                    select(items.c.item_key).where(
                        items.c.source_id == source_id, items.c.item_key.in_(chunk)
                    )
                )
                known_keys.update(r[0] for r in result)
            for chunk in _chunks(links, 500):
                result = await conn.execute(
                    select(items.c.link_norm).where(
                        items.c.source_id == source_id, items.c.link_norm.in_(chunk)
                    )
                )
                known_links.update(r[0] for r in result)
        return known_keys, known_links

    async def record_items(
        self,
        source_id: int,
        new_items: Sequence[Item],
        *,
        to_queue: set[str],
        outcome: PollOutcome,
        meta: FeedMeta | None,
        first_poll: bool,
    ) -> int:
        """In ONE transaction: insert ``new_items`` (oldest first) as seen, queue an
        outbox row per active subscription for the keys in ``to_queue``, and store
        the poll outcome. Returns the number of outbox rows queued.

        A crash before the commit records nothing (the next poll finds the items
        again); after it, they are both seen and queued. Items another process
        inserted meanwhile are skipped by the unique constraint.
        """
        now = outcome.polled_at
        queued = 0
        async with self.db.write() as conn:
            inserted: dict[str, int] = {}
            if new_items:
                stmt = (
                    self._insert(items)
                    .on_conflict_do_nothing(index_elements=["source_id", "item_key"])
                    .returning(items.c.id, items.c.item_key)
                )
                rows = [_item_values(source_id, item, now) for item in new_items]
                # executemany + RETURNING runs as batched multi-row INSERTs
                # ("insertmanyvalues") on both SQLite and psycopg.
                result = await conn.execute(stmt, rows)
                inserted = {str(key): int(item_id) for item_id, key in result.all()}
            queue_ids = [
                inserted[i.key] for i in new_items if i.key in to_queue and i.key in inserted
            ]
            subs = await self._active_subscription_ids(conn, source_id)
            if first_poll:
                queued += await self._queue_backfill(conn, source_id, now)
            elif queue_ids and subs:
                queued += await self._queue(conn, subs, queue_ids, now)
            values: dict[str, Any] = {
                "last_polled_at": now,
                "last_success_at": now,
                "next_poll_at": outcome.next_poll_at,
                "claimed_until": None,
                "consecutive_failures": 0,
                "failing_since": None,
                "last_error": None,
                "etag": outcome.etag,
                "last_modified": outcome.last_modified,
                "body_hash": outcome.body_hash,
                "initialized": True,
            }
            if meta is not None:
                values.update(
                    title=meta.title,
                    site_link=meta.site_link,
                    icon_url=meta.icon_url,
                    kind=meta.kind,
                )
            newest = max((i.published for i in new_items if i.published), default=None)
            if newest is not None:
                values["newest_item_at"] = func.coalesce(
                    func.max(sources.c.newest_item_at, newest)
                    if self.db.dialect == "sqlite"
                    else func.greatest(sources.c.newest_item_at, newest),
                    newest,
                )
            await conn.execute(update(sources).where(sources.c.id == source_id).values(**values))
        return queued

    async def _active_subscription_ids(self, conn: AsyncConnection, source_id: int) -> list[int]:
        result = await conn.execute(
            select(subscriptions.c.id).where(
                subscriptions.c.source_id == source_id,
                subscriptions.c.enabled.is_(True),
                subscriptions.c.paused.is_(False),
            )
        )
        return [int(r[0]) for r in result]

    async def _queue(
        self, conn: AsyncConnection, sub_ids: Sequence[int], item_ids: Sequence[int], now: datetime
    ) -> int:
        rows = [
            {
                "subscription_id": s,
                "item_id": i,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for s in sub_ids
            for i in item_ids
        ]
        if not rows:
            return 0
        stmt = self._insert(outbox).on_conflict_do_nothing(
            index_elements=["subscription_id", "item_id"]
        )
        await conn.execute(stmt, rows)
        return len(rows)

    async def _queue_backfill(self, conn: AsyncConnection, source_id: int, now: datetime) -> int:
        """Queue the newest N stored items for subscriptions that asked for a backfill."""
        wanting = (
            await conn.execute(
                select(subscriptions.c.id, subscriptions.c.backfill).where(
                    subscriptions.c.source_id == source_id,
                    subscriptions.c.enabled.is_(True),
                    subscriptions.c.paused.is_(False),
                    subscriptions.c.backfill > 0,
                )
            )
        ).all()
        queued = 0
        for sub_id, count in wanting:
            newest = (
                await conn.execute(
                    select(items.c.id)
                    .where(items.c.source_id == source_id)
                    .order_by(items.c.id.desc())
                    .limit(int(count))
                )
            ).all()
            # Oldest first, so the channel reads in publication order.
            queued += await self._queue(conn, [sub_id], sorted(int(r[0]) for r in newest), now)
            await conn.execute(
                update(subscriptions).where(subscriptions.c.id == sub_id).values(backfill=0)
            )
        return queued

    # -- subscriptions from the config file ----------------------------------------

    async def sync_config_feeds(self, feeds: Sequence[ConfigFeed], *, now: datetime) -> None:
        """Upsert ``[[feeds]]`` by (url, webhook); disable config subscriptions no longer listed."""
        async with self.db.write() as conn:
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
                        values.update(enabled=True, disabled_reason=None)
                    await conn.execute(
                        update(subscriptions).where(subscriptions.c.id == sub_id).values(**values)
                    )
                keep.add(sub_id)
            stale = select(subscriptions.c.id).where(
                subscriptions.c.origin == "config", subscriptions.c.enabled.is_(True)
            )
            stale_ids = [int(r[0]) for r in await conn.execute(stale) if int(r[0]) not in keep]
            if stale_ids:
                await conn.execute(
                    update(subscriptions)
                    .where(subscriptions.c.id.in_(stale_ids))
                    .values(enabled=False, disabled_reason=REMOVED_FROM_CONFIG)
                )
                log.info(
                    "disabled subscriptions removed from the config file count=%d", len(stale_ids)
                )

    # -- delivery ------------------------------------------------------------------

    async def claim_deliveries(
        self,
        *,
        now: datetime,
        limit: int,
        batch: int,
        lease: timedelta,
        exclude: Iterable[int] = (),
    ) -> list[DeliveryJob]:
        """Claim the oldest due outbox rows of up to ``limit`` subscriptions.

        A subscription is worked on by one sender at a time (its rows go out in
        order): it is skipped while any of its rows holds a live lease, and on
        PostgreSQL its row is locked with ``SKIP LOCKED`` while claiming. Rows
        whose lease expired are claimed again and marked ``in_doubt``.
        """
        if limit <= 0:
            return []
        due_row = or_(
            and_(outbox.c.state == "pending", outbox.c.next_attempt_at <= now),
            and_(outbox.c.state == "sending", outbox.c.lease_until <= now),
        )
        busy = exists().where(
            outbox.c.subscription_id == subscriptions.c.id,
            outbox.c.state == "sending",
            outbox.c.lease_until > now,
        )
        has_due = exists().where(outbox.c.subscription_id == subscriptions.c.id, due_row)
        candidates = (
            select(subscriptions.c.id)
            .where(
                subscriptions.c.enabled.is_(True),
                subscriptions.c.paused.is_(False),
                has_due,
                ~busy,
            )
            .order_by(subscriptions.c.id)
            .limit(limit)
        )
        candidates = self._claimable(candidates, subscriptions.c.id, exclude, of=subscriptions)
        jobs: list[DeliveryJob] = []
        async with self.db.write() as conn:
            sub_ids = [int(r[0]) for r in await conn.execute(candidates)]
            for sub_id in sub_ids:
                job = await self._claim_for_subscription(conn, sub_id, now, batch, lease)
                if job is not None:
                    jobs.append(job)
        return jobs

    async def claim_subscription(
        self, subscription_id: int, *, now: datetime, batch: int, lease: timedelta
    ) -> DeliveryJob | None:
        """Claim the next due rows of one subscription (its sender carries on)."""
        lock = select(subscriptions.c.id).where(
            subscriptions.c.id == subscription_id,
            subscriptions.c.enabled.is_(True),
            subscriptions.c.paused.is_(False),
        )
        if self.db.dialect == "postgresql":
            lock = lock.with_for_update(skip_locked=True)
        async with self.db.write() as conn:
            if (await conn.execute(lock)).first() is None:
                return None
            return await self._claim_for_subscription(conn, subscription_id, now, batch, lease)

    async def _claim_for_subscription(
        self, conn: AsyncConnection, sub_id: int, now: datetime, batch: int, lease: timedelta
    ) -> DeliveryJob | None:
        head = (
            await conn.execute(
                select(
                    outbox.c.id,
                    outbox.c.state,
                    outbox.c.next_attempt_at,
                    outbox.c.lease_until,
                    outbox.c.attempts,
                    outbox.c.created_at,
                )
                .where(
                    outbox.c.subscription_id == sub_id,
                    outbox.c.state.in_(("pending", "sending")),
                )
                .order_by(outbox.c.id)
                .limit(batch)
            )
        ).all()
        # Only the leading due rows: a row waiting for a retry holds back the
        # ones after it, so the channel never reads out of order.
        claimed: list[tuple[int, bool, int, datetime]] = []
        for row_id, state, next_at, lease_until, attempts, created in head:
            in_doubt = state == "sending"
            if in_doubt and lease_until is not None and lease_until > now:
                break
            if not in_doubt and next_at > now:
                break
            claimed.append((int(row_id), in_doubt, int(attempts), created))
        if not claimed:
            return None
        ids = [c[0] for c in claimed]
        await conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(ids))
            .values(state="sending", lease_until=now + lease)
        )
        pending_total = (
            await conn.execute(
                select(func.count()).where(
                    outbox.c.subscription_id == sub_id, outbox.c.state.in_(("pending", "sending"))
                )
            )
        ).scalar_one()
        route = await self._route(conn, sub_id)
        assert route is not None, "a claimed subscription exists"
        item_rows = {
            int(r.outbox_id): r
            for r in await conn.execute(
                select(outbox.c.id.label("outbox_id"), *_ITEM_COLUMNS)
                .join(items, items.c.id == outbox.c.item_id)
                .where(outbox.c.id.in_(ids))
            )
        }
        entries = tuple(
            OutboxEntry(
                id=row_id,
                item=_item_from_row(item_rows[row_id]),
                attempts=attempts,
                created_at=created,
                in_doubt=in_doubt,
            )
            for row_id, in_doubt, attempts, created in claimed
        )
        return DeliveryJob(
            subscription_id=sub_id,
            target=route.target,
            channel_id=route.channel_id,
            options=route.options,
            feed=route.feed,
            entries=entries,
            pending_total=int(pending_total),
        )

    async def _route(self, conn: AsyncConnection, sub_id: int) -> _Route | None:
        """Where a subscription posts and as what."""
        row = (
            await conn.execute(
                select(
                    subscriptions.c.source_id,
                    subscriptions.c.webhook_id,
                    subscriptions.c.webhook_token,
                    subscriptions.c.thread_id,
                    subscriptions.c.channel_id,
                    subscriptions.c.options,
                    sources.c.title,
                    sources.c.site_link,
                    sources.c.icon_url,
                    sources.c.kind,
                    sources.c.url,
                )
                .join(sources, sources.c.id == subscriptions.c.source_id)
                .where(subscriptions.c.id == sub_id)
            )
        ).first()
        if row is None:
            return None
        (
            source_id,
            webhook_id,
            token,
            thread_id,
            channel_id,
            options,
            title,
            site,
            icon,
            kind,
            url,
        ) = row
        return _Route(
            source_id=int(source_id),
            target=WebhookTarget(int(webhook_id), str(token), int(thread_id) or None),
            channel_id=int(channel_id) if channel_id is not None else None,
            options=dict(options or {}),
            feed=FeedInfo(title=title or url, link=site, icon=icon, kind=kind),
        )

    async def mark_sent(
        self, outbox_ids: Sequence[int], *, message_id: int | None, now: datetime
    ) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(outbox_ids)))
                .values(
                    state="sent",
                    message_id=message_id,
                    sent_at=now,
                    lease_until=None,
                    attempts=outbox.c.attempts + 1,
                    last_error=None,
                )
            )

    async def reschedule(
        self,
        outbox_ids: Sequence[int],
        *,
        at: datetime,
        error: str | None,
        count_attempt: bool,
        in_doubt: bool = False,
    ) -> None:
        """Put claimed rows back in the queue, due at ``at``.

        ``in_doubt``: Discord may have accepted them (the answer never came), so
        they come back as expired claims and are looked for before re-sending.
        """
        if not outbox_ids:
            return
        values: dict[str, Any] = (
            {"state": "sending", "lease_until": at, "next_attempt_at": at}
            if in_doubt
            else {"state": "pending", "next_attempt_at": at, "lease_until": None}
        )
        if count_attempt:
            values["attempts"] = outbox.c.attempts + 1
        if error is not None:
            values["last_error"] = error[:MAX_ERROR_TEXT]
        async with self.db.write() as conn:
            await conn.execute(
                update(outbox).where(outbox.c.id.in_(list(outbox_ids))).values(**values)
            )

    async def mark_failed(self, outbox_ids: Sequence[int], *, error: str, now: datetime) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(outbox_ids)))
                .values(
                    state="failed",
                    lease_until=None,
                    attempts=outbox.c.attempts + 1,
                    last_error=error[:MAX_ERROR_TEXT],
                    sent_at=None,
                )
            )

    async def extend_lease(self, outbox_ids: Sequence[int], *, until: datetime) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.id.in_(list(outbox_ids)), outbox.c.state == "sending")
                .values(lease_until=until)
            )

    async def disable_webhook(self, webhook_id: int, *, reason: str) -> list[int]:
        """Disable every subscription posting to ``webhook_id``; their queued rows stay
        (claimed ones go back to pending) so a re-enabled subscription resumes."""
        async with self.db.write() as conn:
            sub_ids = [
                int(r[0])
                for r in await conn.execute(
                    select(subscriptions.c.id).where(subscriptions.c.webhook_id == webhook_id)
                )
            ]
            if not sub_ids:
                return []
            await conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id.in_(sub_ids), subscriptions.c.enabled.is_(True))
                .values(enabled=False, disabled_reason=reason[:MAX_ERROR_TEXT])
            )
            await conn.execute(
                update(outbox)
                .where(outbox.c.subscription_id.in_(sub_ids), outbox.c.state == "sending")
                .values(state="pending", lease_until=None)
            )
        return sub_ids

    async def learn_channel(self, subscription_id: int, channel_id: int) -> None:
        """Remember the channel a webhook posts to (Discord tells us in each reply)."""
        async with self.db.write() as conn:
            await conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == subscription_id, subscriptions.c.channel_id.is_(None))
                .values(channel_id=channel_id)
            )

    async def release_deliveries(self, *, now: datetime) -> int:
        """Free every live delivery lease. Only for a sole process that has just
        started: its predecessor's rows become in doubt at once instead of when
        their lease runs out."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.state == "sending", outbox.c.lease_until.is_not(None))
                .values(lease_until=now)
            )
        return int(result.rowcount)

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

    # -- subscriptions managed from Discord ------------------------------------------

    async def guild_subscriptions(
        self, guild_id: int, *, channel_id: int | None = None, subscription_id: int | None = None
    ) -> list[SubscriptionView]:
        last_sent = (
            select(func.max(outbox.c.sent_at))
            .where(outbox.c.subscription_id == subscriptions.c.id)
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
            )
            for r in rows
        ]

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
        guild_id: int,
        channel_id: int,
        target: WebhookTarget,
        backfill: int,
        options: Mapping[str, object],
        min_interval: float,
        now: datetime,
        meta: FeedMeta | None = None,
    ) -> int | None:
        """A subscription made from Discord; None when this channel already has the source."""
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
                        subscriptions.c.source_id == source_id,
                        subscriptions.c.guild_id == guild_id,
                        subscriptions.c.channel_id == channel_id,
                        subscriptions.c.thread_id == thread,
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
                    origin="discord",
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

    async def guild_subscription(
        self, guild_id: int, subscription_id: int
    ) -> SubscriptionView | None:
        found = await self.guild_subscriptions(guild_id, subscription_id=subscription_id)
        return found[0] if found else None

    async def set_paused(self, guild_id: int, subscription_id: int, *, paused: bool) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == subscription_id, subscriptions.c.guild_id == guild_id)
                .values(paused=paused)
            )
        return bool(result.rowcount)

    async def delete_subscription(self, guild_id: int, subscription_id: int) -> bool:
        # Its queued deliveries go with it (ON DELETE CASCADE).
        async with self.db.write() as conn:
            result = await conn.execute(
                delete(subscriptions).where(
                    subscriptions.c.id == subscription_id, subscriptions.c.guild_id == guild_id
                )
            )
        return bool(result.rowcount)

    async def newest_item(
        self, subscription_id: int
    ) -> tuple[Item, FeedInfo, WebhookTarget, Mapping[str, object]] | None:
        """The source's newest stored item, for ``/feed test`` (with the subscription's
        options)."""
        async with self.db.read() as conn:
            route = await self._route(conn, subscription_id)
            if route is None:
                return None
            row = (
                await conn.execute(
                    select(*_ITEM_COLUMNS)
                    .where(items.c.source_id == route.source_id)
                    .order_by(items.c.published_at.desc().nulls_last(), items.c.id.desc())
                    .limit(1)
                )
            ).first()
        if row is None:
            return None
        return _item_from_row(row), route.feed, route.target, route.options

    async def disable_where(
        self, *, reason: str, guild_id: int | None = None, channel_id: int | None = None
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
                await conn.execute(
                    update(subscriptions)
                    .where(subscriptions.c.id.in_(ids))
                    .values(enabled=False, disabled_reason=reason[:MAX_ERROR_TEXT])
                )
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

    async def source_health(self) -> list[SourceHealth]:
        sub_count = (
            select(func.count())
            .where(subscriptions.c.source_id == sources.c.id, subscriptions.c.enabled.is_(True))
            .scalar_subquery()
        )
        stmt = select(
            sources.c.id,
            sources.c.url,
            sources.c.title,
            sources.c.last_success_at,
            sources.c.last_polled_at,
            sources.c.consecutive_failures,
            sources.c.failing_since,
            sources.c.last_error,
            sources.c.newest_item_at,
            sources.c.next_poll_at,
            sub_count,
        ).order_by(sources.c.id)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [SourceHealth(*row) for row in rows]

    async def counts(self) -> dict[str, int]:
        """Row counts by table and outbox state, for status output and tests."""
        async with self.db.read() as conn:
            out = {
                "sources": (
                    await conn.execute(select(func.count()).select_from(sources))
                ).scalar_one(),
                "subscriptions": (
                    await conn.execute(select(func.count()).select_from(subscriptions))
                ).scalar_one(),
                "items": (await conn.execute(select(func.count()).select_from(items))).scalar_one(),
            }
            for state, count in await conn.execute(
                select(outbox.c.state, func.count()).group_by(outbox.c.state)
            ):
                out[f"outbox_{state}"] = int(count)
        return {k: int(v) for k, v in out.items()}

    async def outbox_items(self, subscription_id: int | None = None) -> list[tuple[int, str, str]]:
        """(outbox id, item key, state) in queue order; for tests and the demo."""
        stmt = (
            select(outbox.c.id, items.c.item_key, outbox.c.state)
            .join(items, items.c.id == outbox.c.item_id)
            .order_by(outbox.c.id)
        )
        if subscription_id is not None:
            stmt = stmt.where(outbox.c.subscription_id == subscription_id)
        async with self.db.read() as conn:
            return [(int(a), str(b), str(c)) for a, b, c in (await conn.execute(stmt)).all()]

    def _claimable(
        self, stmt: Any, id_column: Any, exclude: Iterable[int], *, of: Any = None
    ) -> Any:
        """``stmt`` without the rows this process works on already, and on PostgreSQL
        locked with SKIP LOCKED so concurrent claimers each get different rows."""
        excluded = list(exclude)
        if excluded:
            stmt = stmt.where(id_column.not_in(excluded))
        if self.db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=of)
        return stmt

    def _insert(self, table: Any) -> Any:
        """An INSERT that supports ``on_conflict_do_nothing`` on both dialects."""
        if self.db.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)


REMOVED_FROM_CONFIG = "removed from the config file"

_ITEM_COLUMNS = (
    items.c.item_key,
    items.c.link_norm,
    items.c.title,
    items.c.link,
    items.c.summary,
    items.c.author,
    items.c.published_at,
    items.c.image_url,
    items.c.categories,
    items.c.social,
)


def _item_from_row(row: Any) -> Item:
    return Item(
        key=row.item_key,
        title=row.title,
        link=row.link,
        summary=row.summary,
        author=row.author,
        published=row.published_at,
        image=row.image_url,
        categories=tuple(row.categories or ()),
        link_norm=row.link_norm,
        social=_social_from_json(row.social),
    )


def _social_to_json(social: SocialPost | None) -> dict[str, Any] | None:
    if social is None:
        return None
    values = dataclasses.asdict(social)
    values["images"] = list(social.images)
    return values


def _social_from_json(value: Any) -> SocialPost | None:
    """A stored SocialPost; keys this version does not know are ignored."""
    if not isinstance(value, dict):
        return None
    known = {f.name for f in dataclasses.fields(SocialPost)}
    values = {k: v for k, v in value.items() if k in known}
    values["images"] = tuple(values.get("images") or ())
    try:
        return SocialPost(**values)
    except TypeError:  # a required field missing: render the item as a plain one
        return None


def _item_values(source_id: int, item: Item, now: datetime) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "item_key": item.key,
        "link_norm": item.link_norm,
        "title": item.title,
        "link": item.link,
        "summary": item.summary[:MAX_STORED_SUMMARY],
        "author": item.author,
        "published_at": item.published,
        "image_url": item.image,
        "categories": list(item.categories),
        "first_seen_at": now,
        "social": _social_to_json(item.social),
    }


def _chunks(values: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
