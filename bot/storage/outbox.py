"""Deliveries: claiming a subscription's due outbox rows with where they go, and
recording what Discord did with them."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, bindparam, exists, func, or_, select, update

from bot.models import FeedInfo, Item, WebhookTarget
from bot.storage._common import (
    _ITEM_COLUMNS,
    MAX_ERROR_TEXT,
    _chunks,
    _item_from_row,
    items,
    outbox,
    sources,
    subscriptions,
)
from bot.storage.db import DbConnection
from bot.storage.deliverylog import DeliveryLogMixin
from bot.storage.items import EDIT_WINDOW


@dataclass(frozen=True, slots=True)
class SentMark:
    """Outbox rows Discord accepted, as one message."""

    outbox_ids: tuple[int, ...]
    message_id: int | None
    sent_at: datetime
    # The thread the message went to (a thread subscription's, or a new forum post).
    thread_id: int | None = None


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
    source_url: str


@dataclass(frozen=True, slots=True)
class EditJob:
    """A posted message due an edit: its item changed at the source."""

    outbox_id: int
    subscription_id: int
    target: WebhookTarget
    message_id: int
    thread_id: int | None
    item: Item
    feed: FeedInfo
    options: Mapping[str, object]
    source_url: str
    # The claim (the row's edit_due_at while it is worked on): finishing clears it only
    # if no newer change came in meanwhile.
    claimed_until: datetime


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
    # When the claim on ``entries`` lapses (another process may then take them).
    lease_until: datetime | None = None
    # The source's URL: what log lines name it by (never the webhook's token).
    source_url: str = ""
    # The process (processes.id) the rows were claimed as.
    claimed_by: int | None = None


class OutboxMixin(DeliveryLogMixin):
    """Delivery queries: claims on outbox rows, their outcomes, and routes."""

    async def claim_deliveries(
        self,
        *,
        now: datetime,
        limit: int,
        batch: int,
        lease: timedelta,
        exclude: Iterable[int] = (),
        process: int | None = None,
    ) -> list[DeliveryJob]:
        """Claim the oldest due outbox rows of up to ``limit`` subscriptions.

        A subscription is worked on by one sender at a time (its rows go out in
        order): it is skipped while any of its rows holds a live lease, and on
        PostgreSQL its row is locked with ``SKIP LOCKED`` while claiming. Rows
        whose lease expired are claimed again and marked ``in_doubt``.
        """
        if limit <= 0:
            return []
        params = {"b_now": now, "b_limit": limit, "b_exclude": list(exclude)}
        async with self.db.write() as conn:
            sub_ids = [
                int(r[0])
                for r in await conn.execute(_delivery_candidates_stmt(self.db.dialect), params)
            ]
            return await self._claim_for_subscriptions(conn, sub_ids, now, batch, lease, process)

    async def claim_subscription(
        self,
        subscription_id: int,
        *,
        now: datetime,
        batch: int,
        lease: timedelta,
        process: int | None = None,
    ) -> DeliveryJob | None:
        """Claim the next due rows of one subscription (its sender carries on)."""
        lock = _lock_subscription_stmt(self.db.dialect)
        async with self.db.write() as conn:
            if (await conn.execute(lock, {"b_id": subscription_id})).first() is None:
                return None
            jobs = await self._claim_for_subscriptions(
                conn, [subscription_id], now, batch, lease, process
            )
            return jobs[0] if jobs else None

    async def _claim_for_subscriptions(
        self,
        conn: DbConnection,
        sub_ids: Sequence[int],
        now: datetime,
        batch: int,
        lease: timedelta,
        process: int | None,
    ) -> list[DeliveryJob]:
        """Claim the leading due rows (up to ``batch``) of each subscription.

        A fixed handful of statements for any number of subscriptions: the claim
        runs for every free sender slot, so it must not cost a round trip each.
        """
        if not sub_ids:
            return []
        head = await conn.execute(_QUEUE_HEADS, {"b_subs": list(sub_ids), "b_batch": batch})
        # Only the leading due rows: a row waiting for a retry holds back the
        # ones after it, so the channel never reads out of order.
        claimed: dict[int, list[tuple[int, bool, int, datetime]]] = {}
        held_back: set[int] = set()
        for sub_id, row_id, state, next_at, lease_until, attempts, created in head:
            sub = int(sub_id)
            if sub in held_back:
                continue
            in_doubt = state == "sending"
            if (in_doubt and lease_until is not None and lease_until > now) or (
                not in_doubt and next_at > now
            ):
                held_back.add(sub)
                continue
            claimed.setdefault(sub, []).append((int(row_id), in_doubt, int(attempts), created))
        if not claimed:
            return []
        ids = [row[0] for rows in claimed.values() for row in rows]
        for chunk in _chunks(ids, 500):
            await conn.execute(
                _TAKE_ROWS, {"b_ids": chunk, "b_until": now + lease, "b_process": process}
            )
        subs = sorted(claimed)
        pending_totals = {
            int(sub): int(count)
            for sub, count in await conn.execute(_QUEUED_COUNTS, {"b_subs": subs})
        }
        routes = await self._routes(conn, subs)
        item_rows: dict[int, Any] = {}
        for chunk in _chunks(ids, 500):
            for r in await conn.execute(_OUTBOX_ITEMS, {"b_ids": chunk}):
                item_rows[int(r.outbox_id)] = r
        jobs = []
        for sub in subs:
            route = routes[sub]
            entries = tuple(
                OutboxEntry(
                    id=row_id,
                    item=_item_from_row(item_rows[row_id]),
                    attempts=attempts,
                    created_at=created,
                    in_doubt=in_doubt,
                )
                for row_id, in_doubt, attempts, created in claimed[sub]
            )
            jobs.append(
                DeliveryJob(
                    subscription_id=sub,
                    target=route.target,
                    channel_id=route.channel_id,
                    options=route.options,
                    feed=route.feed,
                    entries=entries,
                    pending_total=pending_totals.get(sub, len(entries)),
                    lease_until=now + lease,
                    source_url=route.source_url,
                    claimed_by=process,
                )
            )
        return jobs

    async def _route(self, conn: DbConnection, sub_id: int) -> _Route | None:
        """Where a subscription posts and as what."""
        return (await self._routes(conn, [sub_id])).get(sub_id)

    async def _routes(self, conn: DbConnection, sub_ids: Sequence[int]) -> dict[int, _Route]:
        found: dict[int, _Route] = {}
        for chunk in _chunks(sub_ids, 500):
            rows = await conn.execute(_ROUTES, {"b_subs": chunk})
            for row in rows:
                (
                    sub_id,
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
                found[int(sub_id)] = _Route(
                    source_id=int(source_id),
                    target=WebhookTarget(int(webhook_id), str(token), int(thread_id) or None),
                    channel_id=int(channel_id) if channel_id is not None else None,
                    options=dict(options or {}),
                    feed=FeedInfo(title=title or url, link=site, icon=icon, kind=kind),
                    source_url=str(url),
                )
        return found

    async def mark_sent(
        self, outbox_ids: Sequence[int], *, message_id: int | None, now: datetime
    ) -> None:
        await self.mark_sent_many([SentMark(tuple(outbox_ids), message_id, now)])

    async def mark_sent_many(self, marks: Sequence[SentMark]) -> list[None]:
        """Record many posted messages in one transaction (the deliverer's group commit)."""
        params = [
            {
                "b_id": row_id,
                "b_message": mark.message_id,
                "b_now": mark.sent_at,
                "b_thread": mark.thread_id,
            }
            for mark in marks
            for row_id in mark.outbox_ids
        ]
        if params:
            async with self.db.write() as conn:
                await conn.execute(_MARK_SENT, params)
                for mark in marks:
                    await self._log_rows(conn, mark.outbox_ids, "sent", None, mark.sent_at)
        return [None] * len(marks)

    async def reschedule(
        self,
        outbox_ids: Sequence[int],
        *,
        at: datetime,
        error: str | None,
        count_attempt: bool,
        in_doubt: bool = False,
        now: datetime | None = None,
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
            if count_attempt and error is not None:
                # a retry after a 5xx, a timeout or a lost answer
                await self._log_rows(conn, outbox_ids, "retried", error, now or at)

    async def mark_failed(self, outbox_ids: Sequence[int], *, error: str, now: datetime) -> None:
        await self._finish_rows(outbox_ids, "failed", error, now)

    async def mark_filtered(self, outbox_ids: Sequence[int], *, reason: str, now: datetime) -> None:
        """Claimed rows the subscription's filters leave out: never sent, kept as
        ``filtered`` so that the delivery log and ``/feed status`` can show them."""
        await self._finish_rows(outbox_ids, "filtered", reason, now)

    async def _finish_rows(
        self, outbox_ids: Sequence[int], state: str, reason: str, now: datetime
    ) -> None:
        """Claimed rows that end unsent (``failed`` counts an attempt, ``filtered`` made
        none), with the reason, logged in the same transaction."""
        if not outbox_ids:
            return
        values: dict[str, Any] = {
            "state": state,
            "lease_until": None,
            "claimed_by": None,
            "last_error": reason[:MAX_ERROR_TEXT],
            # not sent: "last post" must not count it; retention ages it by created_at
            "sent_at": None,
        }
        if state == "failed":
            values["attempts"] = outbox.c.attempts + 1
        async with self.db.write() as conn:
            await conn.execute(
                update(outbox).where(outbox.c.id.in_(list(outbox_ids))).values(**values)
            )
            await self._log_rows(conn, outbox_ids, state, reason, now)

    async def claim_edits(
        self, *, now: datetime, limit: int, lease: timedelta, exclude: Iterable[int] = ()
    ) -> list[EditJob]:
        """Claim up to ``limit`` posted messages due an edit (``edit_due_at`` passed),
        of active subscriptions, oldest change first."""
        if limit <= 0:
            return []
        due_now = (
            outbox.c.edit_due_at <= now,
            outbox.c.state == "sent",
            outbox.c.message_id.is_not(None),
            # a message older than the window is followed no more (a subscription paused
            # for weeks, edits that kept failing)
            outbox.c.sent_at >= now - EDIT_WINDOW,
            subscriptions.c.enabled.is_(True),
            subscriptions.c.paused.is_(False),
        )
        # Almost always nothing is due: a read (on the index) spares the write lock that
        # the delivery tick would otherwise take every half second.
        async with self.db.read() as conn:
            due = await conn.execute(
                select(outbox.c.id)
                .join(subscriptions, subscriptions.c.id == outbox.c.subscription_id)
                .where(*due_now)
                .limit(1)
            )
            if due.first() is None:
                return []
        until = now + lease
        async with self.db.write() as conn:
            stmt = (
                select(
                    outbox.c.id, outbox.c.subscription_id, outbox.c.message_id, outbox.c.thread_id
                )
                .join(subscriptions, subscriptions.c.id == outbox.c.subscription_id)
                .where(*due_now, outbox.c.subscription_id.not_in(list(exclude)))
                .order_by(outbox.c.edit_due_at, outbox.c.id)
                .limit(limit)
            )
            if self.db.dialect == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True, of=outbox)
            rows = (await conn.execute(stmt)).all()
            if not rows:
                return []
            ids = [int(r[0]) for r in rows]
            await conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(edit_due_at=until))
            routes = await self._routes(conn, sorted({int(r[1]) for r in rows}))
            item_rows = {
                int(r.outbox_id): r for r in await conn.execute(_OUTBOX_ITEMS, {"b_ids": ids})
            }
        jobs = []
        for row_id, sub_id, message_id, thread_id in rows:
            route = routes[int(sub_id)]
            jobs.append(
                EditJob(
                    outbox_id=int(row_id),
                    subscription_id=int(sub_id),
                    target=route.target,
                    message_id=int(message_id),
                    thread_id=int(thread_id) if thread_id else route.target.thread_id,
                    item=_item_from_row(item_rows[int(row_id)]),
                    feed=route.feed,
                    options=route.options,
                    source_url=route.source_url,
                    claimed_until=until,
                )
            )
        return jobs

    async def finish_edit(self, job: EditJob, *, retry_at: datetime | None = None) -> None:
        """The edit is done or moot (``retry_at`` None), or must be tried again then.
        A change noted while it was being sent keeps its own due time."""
        await self.db.write_one(
            update(outbox)
            .where(outbox.c.id == job.outbox_id, outbox.c.edit_due_at == job.claimed_until)
            .values(edit_due_at=retry_at)
        )

    async def extend_lease(self, outbox_ids: Sequence[int], *, until: datetime) -> None:
        await self.db.write_one(
            update(outbox)
            .where(outbox.c.id.in_(list(outbox_ids)), outbox.c.state == "sending")
            .values(lease_until=until)
        )

    async def release_deliveries(self, *, now: datetime) -> int:
        """Free every live delivery lease. Only for a sole process that has just
        started: its predecessor's rows become in doubt at once instead of when
        their lease runs out."""
        result = await self.db.write_one(
            update(outbox)
            .where(outbox.c.state == "sending", outbox.c.lease_until.is_not(None))
            .values(lease_until=now)
        )
        return int(result.rowcount)

    # -- /feed test ----------------------------------------------------------------

    async def subscription_target(self, subscription_id: int) -> WebhookTarget | None:
        """Where a subscription posts (``/feed test`` before anything is stored)."""
        async with self.db.read() as conn:
            route = await self._route(conn, subscription_id)
        return route.target if route else None

    async def newest_item(
        self, subscription_id: int
    ) -> tuple[Item, FeedInfo, WebhookTarget, Mapping[str, object]] | None:
        """The source's newest stored item, for ``/feed test`` (with the subscription's
        options)."""
        async with self.db.read() as conn:
            route = await self._route(conn, subscription_id)
            if route is None:
                return None
            newest = await self._newest_items(conn, route.source_id, 1)
        if not newest:
            return None
        return newest[0], route.feed, route.target, route.options

    async def recent_items(
        self, subscription_id: int, *, limit: int = 50
    ) -> tuple[list[Item], FeedInfo] | None:
        """The subscription's source's newest stored items (newest first) and the feed, for
        previews of settings; None for no such subscription."""
        async with self.db.read() as conn:
            route = await self._route(conn, subscription_id)
            if route is None:
                return None
            return await self._newest_items(conn, route.source_id, limit), route.feed

    async def _newest_items(self, conn: DbConnection, source_id: int, limit: int) -> list[Item]:
        rows = await conn.execute(
            select(*_ITEM_COLUMNS)
            .where(items.c.source_id == source_id)
            .order_by(items.c.published_at.desc().nulls_last(), items.c.id.desc())
            .limit(limit)
        )
        return [_item_from_row(row) for row in rows.all()]

    async def queue_test(self, subscription_id: int, *, now: datetime) -> int | None:
        """Queue the source's newest item for the subscription again (``/feed test`` in a
        process without the delivery role); the outbox row's id, None without items.

        One row per (subscription, item): a delivered or failed one goes back to the
        queue (its next send records the new message), a queued one stays as it is."""
        async with self.db.write() as conn:
            route = await self._route(conn, subscription_id)
            if route is None:
                return None
            item_id = (
                await conn.execute(
                    select(items.c.id)
                    .where(items.c.source_id == route.source_id)
                    .order_by(items.c.published_at.desc().nulls_last(), items.c.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if item_id is None:
                return None
            row_of = select(outbox.c.id, outbox.c.state).where(
                outbox.c.subscription_id == subscription_id, outbox.c.item_id == item_id
            )
            existing = (await conn.execute(row_of)).first()
            again = {
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "lease_until": None,
                "claimed_by": None,
                "last_error": None,
                "sent_at": None,
                "message_id": None,
            }
            if existing is None:
                result = await conn.execute(
                    self._insert(outbox)
                    .values(
                        subscription_id=subscription_id, item_id=item_id, created_at=now, **again
                    )
                    .on_conflict_do_nothing(index_elements=["subscription_id", "item_id"])
                    .returning(outbox.c.id)
                )
                inserted = result.scalar_one_or_none()
                if inserted is not None:
                    return int(inserted)
                # queued by a test asked for at the same moment: that one will do
                existing = (await conn.execute(row_of)).one()
            if existing[1] in ("sent", "failed", "filtered"):
                await conn.execute(update(outbox).where(outbox.c.id == existing[0]).values(**again))
            return int(existing[0])

    async def delivery_state(self, outbox_id: int) -> str | None:
        async with self.db.read() as conn:
            return (  # type: ignore[no-any-return]
                await conn.execute(select(outbox.c.state).where(outbox.c.id == outbox_id))
            ).scalar_one_or_none()

    # -- reporting -----------------------------------------------------------------

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


# -- statements built once (why: see _common.py) ---------------------------------------

# Built once: a statement object keeps its SQLAlchemy cache key, so running it
# again skips building the expression and keying the compiled-SQL cache, which
# cost more than the UPDATE itself (one runs per message posted).
_MARK_SENT = (
    update(outbox)
    .where(outbox.c.id == bindparam("b_id"))
    .values(
        state="sent",
        message_id=bindparam("b_message"),
        sent_at=bindparam("b_now"),
        lease_until=None,
        attempts=outbox.c.attempts + 1,
        last_error=None,
        thread_id=bindparam("b_thread"),
    )
)


@functools.cache
def _delivery_candidates_stmt(dialect: str) -> Any:
    now = bindparam("b_now", type_=outbox.c.next_attempt_at.type)
    due_row = or_(
        and_(outbox.c.state == "pending", outbox.c.next_attempt_at <= now),
        and_(outbox.c.state == "sending", outbox.c.lease_until <= now),
    )
    busy = exists().where(
        outbox.c.subscription_id == subscriptions.c.id,
        outbox.c.state == "sending",
        outbox.c.lease_until > now,
    )
    # The state IN (...) repeats what due_row implies so that the lookup seeks
    # (subscription_id, state) in its index rather than walking the rows the
    # subscription has already sent.
    has_due = exists().where(
        outbox.c.subscription_id == subscriptions.c.id,
        outbox.c.state.in_(("pending", "sending")),
        due_row,
    )
    stmt = (
        select(subscriptions.c.id)
        .where(
            subscriptions.c.enabled.is_(True),
            subscriptions.c.paused.is_(False),
            has_due,
            ~busy,
            subscriptions.c.id.not_in(bindparam("b_exclude", expanding=True)),
        )
        .order_by(subscriptions.c.id)
        .limit(bindparam("b_limit", type_=Integer))
    )
    if dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=subscriptions)
    return stmt


@functools.cache
def _lock_subscription_stmt(dialect: str) -> Any:
    stmt = select(subscriptions.c.id).where(
        subscriptions.c.id == bindparam("b_id"),
        subscriptions.c.enabled.is_(True),
        subscriptions.c.paused.is_(False),
    )
    if dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return stmt


def _queue_heads() -> Any:
    """Each subscription's first ``b_batch`` queued rows, oldest first."""
    position = (
        func.row_number()
        .over(partition_by=outbox.c.subscription_id, order_by=outbox.c.id)
        .label("position")
    )
    queued = (
        select(
            outbox.c.subscription_id,
            outbox.c.id,
            outbox.c.state,
            outbox.c.next_attempt_at,
            outbox.c.lease_until,
            outbox.c.attempts,
            outbox.c.created_at,
            position,
        )
        .where(
            outbox.c.subscription_id.in_(bindparam("b_subs", expanding=True)),
            outbox.c.state.in_(("pending", "sending")),
        )
        .subquery()
    )
    return (
        select(*[c for c in queued.c if c.name != "position"])
        .where(queued.c.position <= bindparam("b_batch", type_=Integer))
        .order_by(queued.c.subscription_id, queued.c.id)
    )


_QUEUE_HEADS = _queue_heads()
_TAKE_ROWS = (
    update(outbox)
    .where(outbox.c.id.in_(bindparam("b_ids", expanding=True)))
    .values(state="sending", lease_until=bindparam("b_until"), claimed_by=bindparam("b_process"))
)
_QUEUED_COUNTS = (
    select(outbox.c.subscription_id, func.count())
    .where(
        outbox.c.subscription_id.in_(bindparam("b_subs", expanding=True)),
        outbox.c.state.in_(("pending", "sending")),
    )
    .group_by(outbox.c.subscription_id)
)
_OUTBOX_ITEMS = (
    select(outbox.c.id.label("outbox_id"), *_ITEM_COLUMNS)
    .join(items, items.c.id == outbox.c.item_id)
    .where(outbox.c.id.in_(bindparam("b_ids", expanding=True)))
)
_ROUTES = (
    select(
        subscriptions.c.id,
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
    .where(subscriptions.c.id.in_(bindparam("b_subs", expanding=True)))
)
