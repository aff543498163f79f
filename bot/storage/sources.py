"""Sources: adding and moving them, claiming the due ones, recording poll outcomes,
and their health for status output."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, exists, func, or_, select, update

from bot.hooks import is_hook
from bot.models import SourceHealth
from bot.storage._common import (
    MAX_ERROR_TEXT,
    StoreBase,
    sources,
    subscriptions,
)
from bot.storage.db import DbConnection


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
    # until when a verified WebSub subscription pushes the source's items
    push_until: datetime | None = None
    # the WebSub hub last discovered (bot.websub.discover)
    hub_url: str | None = None


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


class SourcesMixin(StoreBase):
    """Source queries: adding and moving sources, claims, poll outcomes, health."""

    async def add_source(self, url: str, *, now: datetime) -> int:
        """The id of the source with ``url``, created due now if absent."""
        async with self.db.write() as conn:
            return await self._ensure_source(conn, url, now)

    async def _ensure_source(self, conn: DbConnection, url: str, now: datetime) -> int:
        row = (await conn.execute(select(sources.c.id).where(sources.c.url == url))).first()
        if row is not None:
            return int(row[0])
        # An inbound hook's source (hook:N) is never polled: it is born initialised.
        hook = is_hook(url)
        stmt = (
            self._insert(sources)
            .values(
                url=url,
                kind="hook" if hook else "feed",
                title=url if hook else None,
                initialized=hook,
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
        self,
        *,
        now: datetime,
        limit: int,
        lease: timedelta,
        exclude: Iterable[int] = (),
        process: int | None = None,
    ) -> list[DueSource]:
        """Claim up to ``limit`` due sources for ``lease``.

        Several processes may claim at once: on PostgreSQL, ``SKIP LOCKED``
        hands each row to one of them; a crashed poller's claim simply expires.
        """
        if limit <= 0:
            return []
        params = {
            "b_now": now,
            "b_until": now + lease,
            "b_limit": limit,
            "b_exclude": list(exclude),
            "b_process": process,
        }
        rows = (await self.db.write_one(_claim_sources_stmt(self.db.dialect), params)).all()
        return [DueSource(*row) for row in rows]

    async def set_hub(self, source_id: int, hub_url: str, topic_url: str | None) -> None:
        """The WebSub hub (and topic) a poll found in the HTTP headers alone."""
        await self.db.write_one(
            update(sources)
            .where(sources.c.id == source_id)
            .values(hub_url=hub_url, topic_url=topic_url)
        )

    async def release_claims(self) -> int:
        """Free every claim. Only for a process that knows it is the database's sole
        user (SQLite): claims left by a crash would otherwise hold sources until they expire."""
        result = await self.db.write_one(
            update(sources).where(sources.c.claimed_until.is_not(None)).values(claimed_until=None)
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
                    _RECORD_FAILED,
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

    async def _record_ok(self, conn: DbConnection, ok: Sequence[PollOutcome]) -> None:
        keep = [o for o in ok if o.keep_validators]
        replace = [o for o in ok if not o.keep_validators]
        if keep:
            await conn.execute(
                _RECORD_OK_KEEP_VALIDATORS,
                [
                    {"b_id": o.source_id, "b_polled": o.polled_at, "b_next": o.next_poll_at}
                    for o in keep
                ],
            )
        if replace:
            await conn.execute(
                _RECORD_OK_NEW_VALIDATORS,
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


# -- statements built once (why: see _common.py) ---------------------------------------


@functools.cache
def _claim_sources_stmt(dialect: str) -> Any:
    has_active = exists().where(
        subscriptions.c.source_id == sources.c.id, subscriptions.c.enabled.is_(True)
    )
    now = bindparam("b_now", type_=sources.c.next_poll_at.type)
    due = (
        select(sources.c.id)
        .where(
            sources.c.next_poll_at <= now,
            or_(sources.c.claimed_until.is_(None), sources.c.claimed_until <= now),
            has_active,
            sources.c.kind != "hook",
            sources.c.id.not_in(bindparam("b_exclude", expanding=True)),
        )
        .order_by(sources.c.next_poll_at)
        .limit(bindparam("b_limit", type_=Integer))
    )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    return (
        update(sources)
        .where(sources.c.id.in_(due.scalar_subquery()))
        .values(claimed_until=bindparam("b_until"), claimed_by=bindparam("b_process"))
        .returning(
            sources.c.id,
            sources.c.url,
            sources.c.etag,
            sources.c.last_modified,
            sources.c.body_hash,
            sources.c.initialized,
            sources.c.interval_seconds,
            sources.c.consecutive_failures,
            sources.c.push_until,
            sources.c.hub_url,
        )
    )


_RECORD_FAILED = (
    update(sources)
    .where(sources.c.id == bindparam("b_id"))
    .values(
        last_polled_at=bindparam("b_polled"),
        next_poll_at=bindparam("b_next"),
        claimed_until=None,
        consecutive_failures=sources.c.consecutive_failures + 1,
        failing_since=func.coalesce(sources.c.failing_since, bindparam("b_polled")),
        last_error=bindparam("b_error"),
    )
)
# A successful poll: healthy, plus (unless they came back unchanged) the validators.
_NEW_VALIDATORS: dict[str, Any] = {
    "etag": bindparam("b_etag"),
    "last_modified": bindparam("b_lm"),
    "body_hash": bindparam("b_hash"),
}


def _healthy_update(**extra: Any) -> Any:
    """The UPDATE of a successfully polled source (b_id, b_polled, b_next), plus ``extra``."""
    return (
        update(sources)
        .where(sources.c.id == bindparam("b_id"))
        .values(
            last_polled_at=bindparam("b_polled"),
            last_success_at=bindparam("b_polled"),
            next_poll_at=bindparam("b_next"),
            claimed_until=None,
            consecutive_failures=0,
            failing_since=None,
            last_error=None,
            **extra,
        )
    )


_RECORD_OK_KEEP_VALIDATORS = _healthy_update()
_RECORD_OK_NEW_VALIDATORS = _healthy_update(**_NEW_VALIDATORS)
