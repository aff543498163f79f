"""WebSub subscriptions at hubs: which sources need one, claims on the requests to
make, the hub's verifications and denials, and falling back to polling.

Every state a second process (or the hub's call to another process) must see lives
here: the pending mode a verification must match, the secret, the lease."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Exists, and_, case, delete, exists, func, or_, select, update

from bot.storage._common import MAX_ERROR_TEXT, StoreBase, sources, subscriptions, websub
from bot.storage.db import DbConnection

# failures so far -> how long until the hub is asked again
Backoff = Callable[[int], timedelta]


@dataclass(frozen=True, slots=True)
class WebSubRequest:
    """A (un)subscribe request to make now; the row is already marked pending."""

    id: int
    mode: str  # "subscribe" | "unsubscribe"
    hub_url: str
    topic_url: str
    callback_id: str
    secret: str
    renewal: bool  # a lease is running: this renews it


@dataclass(frozen=True, slots=True)
class PushTarget:
    """What a content distribution to a callback needs."""

    id: int
    source_id: int
    source_url: str
    topic_url: str
    secret: str
    initialized: bool
    newest_item_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PushState:
    """A source's WebSub state, for status output."""

    hub_url: str | None
    subscribed_until: datetime | None
    pending_mode: str | None
    last_error: str | None
    last_push_at: datetime | None


_PUSH_COLUMNS = (
    sources.c.hub_url,
    websub.c.expires_at,
    websub.c.pending_mode,
    websub.c.last_error,
    websub.c.last_push_at,
)


def _push_state(row: Any) -> PushState:
    return PushState(
        hub_url=row.hub_url,
        subscribed_until=row.expires_at,
        pending_mode=row.pending_mode,
        last_error=row.last_error,
        last_push_at=row.last_push_at,
    )


def _matching(callback_id: str, topic: str, mode: str | None = None) -> list[Any]:
    """The callback's row, for ``topic`` (and, with ``mode``, with that request pending)."""
    conditions = [websub.c.callback_id == callback_id, websub.c.topic_url == topic]
    if mode is not None:
        conditions.append(websub.c.pending_mode == mode)
    return conditions


def _active_subscription(source_id: Any) -> Exists:
    return exists().where(subscriptions.c.source_id == source_id, subscriptions.c.enabled.is_(True))


class WebSubMixin(StoreBase):
    """Queries of the WebSub subscriber (``bot.push``)."""

    async def websub_sweep(self, *, now: datetime, new_ids: Sequence[tuple[str, str]]) -> int:
        """Start a WebSub subscription (a row due now) for each source that announces a
        hub and a topic, has had its first poll and an enabled subscription, and has none
        yet; ``new_ids`` gives each new row its (callback id, secret), one pair per row at
        most. Rows whose source lost its last subscription become due now (unsubscribe).
        Returns the rows created."""
        async with self.db.write() as conn:
            wanting = (
                await conn.execute(
                    select(sources.c.id, sources.c.hub_url, sources.c.topic_url)
                    .where(
                        sources.c.hub_url.is_not(None),
                        sources.c.topic_url.is_not(None),
                        sources.c.initialized.is_(True),
                        sources.c.kind != "hook",
                        _active_subscription(sources.c.id),
                        ~exists().where(websub.c.source_id == sources.c.id),
                    )
                    .order_by(sources.c.id)
                    .limit(len(new_ids))
                )
            ).all()
            for (source_id, hub, topic), (callback_id, secret) in zip(
                wanting, new_ids, strict=False
            ):
                await conn.execute(
                    self._insert(websub)
                    .values(
                        source_id=source_id,
                        callback_id=callback_id,
                        hub_url=hub,
                        topic_url=topic,
                        secret=secret,
                        action_at=now,
                        failures=0,
                        created_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["source_id"])
                )
            # A feed that moved to another hub or topic, or stopped naming one: its row
            # lets go of the source (and is unsubscribed at the old hub); the next sweep
            # subscribes the source where it points now.
            moved = (
                await conn.execute(
                    select(websub.c.id, websub.c.source_id)
                    .join(sources, sources.c.id == websub.c.source_id)
                    .where(
                        websub.c.pending_mode.is_(None),
                        or_(
                            sources.c.hub_url.is_(None),
                            sources.c.topic_url.is_(None),
                            sources.c.hub_url != websub.c.hub_url,
                            sources.c.topic_url != websub.c.topic_url,
                        ),
                    )
                )
            ).all()
            for row_id, source_id in moved:
                await conn.execute(
                    update(websub)
                    .where(websub.c.id == row_id)
                    .values(source_id=None, action_at=now)
                )
                await self._stop_pushing(conn, source_id, now)
            await conn.execute(
                update(websub)
                .where(
                    websub.c.pending_mode.is_(None),
                    websub.c.action_at > now,
                    # a row waiting out a failure keeps its backoff
                    websub.c.failures == 0,
                    or_(websub.c.source_id.is_(None), ~_active_subscription(websub.c.source_id)),
                )
                .values(action_at=now)
            )
            return len(wanting)

    async def claim_websub_requests(
        self, *, now: datetime, verify_timeout: timedelta, retry: Backoff, limit: int = 50
    ) -> list[WebSubRequest]:
        """The requests due now, each claimed by marking its row pending (so a second
        process does not make it too, and the hub's verification finds it). A row still
        pending since the last claim was never verified: that counts as a failure, retried
        after ``retry(failures)``. A source without an enabled subscription is unsubscribed (or its
        row dropped, when no lease runs)."""
        claimed: list[WebSubRequest] = []
        async with self.db.write() as conn:
            rows = (
                await conn.execute(
                    select(
                        websub.c.id,
                        websub.c.source_id,
                        websub.c.hub_url,
                        websub.c.topic_url,
                        websub.c.callback_id,
                        websub.c.secret,
                        websub.c.pending_mode,
                        websub.c.expires_at,
                        websub.c.action_at,
                        _active_subscription(websub.c.source_id).label("active"),
                    )
                    .where(websub.c.action_at <= now)
                    .order_by(websub.c.action_at)
                    .limit(limit)
                )
            ).all()
            for row in rows:
                running = row.expires_at is not None and row.expires_at > now
                if row.pending_mode is not None:
                    # never verified: a failure; the next look retries
                    await self._websub_failed(
                        conn,
                        row.id,
                        f"the hub did not verify the {row.pending_mode} request within "
                        f"{verify_timeout.total_seconds():.0f} s",
                        now=now,
                        retry=retry,
                        only_if_action_at=row.action_at,
                    )
                    continue
                mode = "subscribe" if row.active and row.source_id is not None else "unsubscribe"
                if mode == "unsubscribe" and not running:
                    await conn.execute(delete(websub).where(websub.c.id == row.id))
                    continue
                result = await conn.execute(
                    update(websub)
                    .where(websub.c.id == row.id, websub.c.action_at == row.action_at)
                    .values(
                        pending_mode=mode,
                        requested_at=now,
                        action_at=now + verify_timeout,
                    )
                )
                if result.rowcount:
                    claimed.append(
                        WebSubRequest(
                            id=row.id,
                            mode=mode,
                            hub_url=row.hub_url,
                            topic_url=row.topic_url,
                            callback_id=row.callback_id,
                            secret=row.secret,
                            renewal=running,
                        )
                    )
        return claimed

    async def websub_request_failed(
        self, request: WebSubRequest, error: str, *, now: datetime, retry: Backoff
    ) -> None:
        """The hub refused or failed the request: subscribe is retried after ``retry``
        (the source is polled at its normal interval meanwhile); a failed unsubscribe
        drops the row (the hub's lease simply runs out)."""
        async with self.db.write() as conn:
            if request.mode == "unsubscribe":
                await conn.execute(delete(websub).where(websub.c.id == request.id))
                return
            await self._websub_failed(conn, request.id, error, now=now, retry=retry)

    async def _websub_failed(
        self,
        conn: DbConnection,
        row_id: int,
        error: str,
        *,
        now: datetime,
        retry: Backoff,
        only_if_action_at: datetime | None = None,
    ) -> None:
        conditions = [websub.c.id == row_id]
        if only_if_action_at is not None:
            conditions.append(websub.c.action_at == only_if_action_at)
        failures = (
            await conn.execute(select(websub.c.failures).where(*conditions))
        ).scalar_one_or_none()
        if failures is None:
            return
        result = await conn.execute(
            update(websub)
            .where(*conditions)
            .values(
                pending_mode=None,
                failures=failures + 1,
                last_error=error[:MAX_ERROR_TEXT],
                action_at=now + retry(failures + 1),
            )
            .returning(websub.c.source_id, websub.c.expires_at)
        )
        row = result.first()
        if (
            row is not None
            and row.source_id is not None
            and not (row.expires_at is not None and row.expires_at > now)
        ):
            await self._stop_pushing(conn, row.source_id, now)

    async def websub_verify(
        self,
        callback_id: str,
        *,
        mode: str,
        topic: str,
        lease_seconds: int | None,
        now: datetime,
        default_lease: int,
        renew_margin: float,
    ) -> bool:
        """The hub's verification of intent: True (echo the challenge) only when the
        callback's row has a pending request of ``mode`` for ``topic``; a subscribe then
        runs until its lease ends (renewed ``renew_margin`` seconds before), an
        unsubscribe removes the row."""
        # Anyone can make this request: a read settles the usual "no" without the write lock.
        matching = _matching(callback_id, topic, mode)
        if not await self._exists(matching):
            return False
        async with self.db.write() as conn:
            row = (
                await conn.execute(select(websub.c.id, websub.c.source_id).where(*matching))
            ).first()
            if row is None:  # answered meanwhile
                return False
            if mode == "unsubscribe":
                await conn.execute(delete(websub).where(websub.c.id == row.id))
                if row.source_id is not None:
                    await self._stop_pushing(conn, row.source_id, now)
                return True
            lease = lease_seconds if lease_seconds and lease_seconds > 0 else default_lease
            expires = now + timedelta(seconds=lease)
            await conn.execute(
                update(websub)
                .where(websub.c.id == row.id)
                .values(
                    pending_mode=None,
                    expires_at=expires,
                    action_at=expires - timedelta(seconds=renew_margin),
                    failures=0,
                    last_error=None,
                )
            )
            if row.source_id is not None:
                await conn.execute(
                    update(sources).where(sources.c.id == row.source_id).values(push_until=expires)
                )
            return True

    async def _exists(self, conditions: Sequence[Any]) -> bool:
        async with self.db.read() as conn:
            return (await conn.execute(select(websub.c.id).where(*conditions))).first() is not None

    async def websub_denied(
        self, callback_id: str, *, topic: str, reason: str, now: datetime, retry: Backoff
    ) -> bool:
        """The hub denied the subscription: polled at the normal interval again, asked
        again after ``retry(failures)``. True when the callback and topic were ours."""
        matching = _matching(callback_id, topic)
        if not await self._exists(matching):
            return False
        async with self.db.write() as conn:
            row = (
                await conn.execute(select(websub.c.id, websub.c.source_id).where(*matching))
            ).first()
            if row is None:
                return False
            await conn.execute(update(websub).where(websub.c.id == row.id).values(expires_at=None))
            await self._websub_failed(
                conn, row.id, f"the hub denied the subscription: {reason}", now=now, retry=retry
            )
            return True

    async def push_target(self, callback_id: str) -> PushTarget | None:
        """The source a content distribution to ``callback_id`` is for, if any."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        websub.c.id,
                        websub.c.source_id,
                        sources.c.url,
                        websub.c.topic_url,
                        websub.c.secret,
                        sources.c.initialized,
                        sources.c.newest_item_at,
                    )
                    .join(sources, sources.c.id == websub.c.source_id)
                    .where(websub.c.callback_id == callback_id)
                )
            ).first()
        if row is None:
            return None
        return PushTarget(
            id=row.id,
            source_id=row.source_id,
            source_url=row.url,
            topic_url=row.topic_url,
            secret=row.secret,
            initialized=bool(row.initialized),
            newest_item_at=row.newest_item_at,
        )

    async def note_push(self, target_id: int, *, now: datetime) -> None:
        await self.db.write_one(
            update(websub).where(websub.c.id == target_id).values(last_push_at=now)
        )

    async def websub_missed(
        self, source_id: int, *, now: datetime, poll_at: datetime, settled: timedelta
    ) -> bool:
        """A poll found items the hub never pushed: the hub stopped delivering. The
        source is polled at its normal interval again (next by ``poll_at``) and subscribed
        again now. True when the source was pushed.

        Only a subscription asked for more than ``settled`` ago counts: the first polls
        after it find what was published before the hub started pushing."""
        async with self.db.write() as conn:
            result = await conn.execute(
                update(websub)
                .where(
                    websub.c.source_id == source_id,
                    websub.c.pending_mode.is_(None),
                    websub.c.requested_at <= now - settled,
                )
                .values(
                    action_at=now,
                    expires_at=None,
                    failures=websub.c.failures + 1,
                    last_error="a poll found items the hub did not push",
                )
            )
            if not result.rowcount:
                return False
            await self._stop_pushing(conn, source_id, poll_at)
            return True

    async def _stop_pushing(self, conn: DbConnection, source_id: int, poll_at: datetime) -> None:
        """Back to polling at the normal interval: a source that was pushed (its next poll
        a safety interval away) is polled by ``poll_at``; one that was not keeps its time."""
        await conn.execute(
            update(sources)
            .where(sources.c.id == source_id)
            .values(
                push_until=None,
                next_poll_at=case(
                    (
                        and_(sources.c.push_until.is_not(None), sources.c.next_poll_at > poll_at),
                        poll_at,
                    ),
                    else_=sources.c.next_poll_at,
                ),
            )
        )

    async def push_states(self, source_ids: Sequence[int]) -> dict[int, PushState]:
        """Per source (of ``source_ids``) its hub and WebSub subscription, if any."""
        if not source_ids:
            return {}
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        sources.c.id,
                        *_PUSH_COLUMNS,
                    )
                    .select_from(sources.outerjoin(websub, websub.c.source_id == sources.c.id))
                    .where(sources.c.id.in_(list(source_ids)))
                )
            ).all()
        return {int(r.id): _push_state(r) for r in rows}

    async def guild_push_states(self, guild_id: int) -> dict[int, PushState]:
        """Per subscription of the server whose source announces a hub, its WebSub state."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        subscriptions.c.id,
                        *_PUSH_COLUMNS,
                    )
                    .select_from(
                        subscriptions.join(
                            sources, sources.c.id == subscriptions.c.source_id
                        ).outerjoin(websub, websub.c.source_id == sources.c.id)
                    )
                    .where(
                        subscriptions.c.guild_id == guild_id,
                        subscriptions.c.enabled.is_(True),
                        subscriptions.c.paused.is_(False),
                        sources.c.hub_url.is_not(None),
                    )
                )
            ).all()
        return {int(r.id): _push_state(r) for r in rows}

    async def websub_counts(self, *, now: datetime) -> dict[str, int]:
        """How many WebSub subscriptions are active (lease running) and pending."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        func.count().filter(
                            and_(websub.c.expires_at.is_not(None), websub.c.expires_at > now)
                        ),
                        func.count().filter(websub.c.pending_mode.is_not(None)),
                    )
                )
            ).one()
        return {"active": int(row[0] or 0), "pending": int(row[1] or 0)}
