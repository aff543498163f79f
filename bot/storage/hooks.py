"""Inbound webhook endpoints: creating them (and the ``hook:N`` source their posts
belong to), finding one by its token's hash, the per-token rate counter, and the
items their requests become."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, exists, select, update

from bot.hooks import SOURCE_PREFIX
from bot.models import Item
from bot.storage._common import CONFIG_SYNC_LOCK, hooks, sources, subscriptions
from bot.storage.db import DbConnection
from bot.storage.items import ItemsMixin, PollRecord
from bot.storage.sources import PollOutcome, SourcesMixin

# A hook's source is never polled; its "next poll" is parked far out.
NEVER = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class HookInfo:
    id: int
    source_id: int
    template: str


@dataclass(frozen=True, slots=True)
class ConfigHook:
    token_hash: str
    template: str


class HooksMixin(ItemsMixin, SourcesMixin):
    """Hook queries; a hook's items go through ``record_polls`` like a poll's."""

    async def create_hook(
        self, *, token_hash: str, template: str, origin: str, now: datetime
    ) -> str:
        """A new hook; returns its source's URL (``hook:N``) to subscribe a webhook to."""
        async with self.db.write() as conn:
            return await self._create_hook(conn, token_hash, template, origin, now)

    async def _create_hook(
        self, conn: DbConnection, token_hash: str, template: str, origin: str, now: datetime
    ) -> str:
        hook_id = (
            await conn.execute(
                self._insert(hooks)
                .values(
                    token_hash=token_hash,
                    template=template,
                    origin=origin,
                    rate_count=0,
                    created_at=now,
                )
                .returning(hooks.c.id)
            )
        ).scalar_one()
        url = f"{SOURCE_PREFIX}{hook_id}"
        source_id = await self._ensure_source(conn, url, now)
        await conn.execute(update(hooks).where(hooks.c.id == hook_id).values(source_id=source_id))
        await conn.execute(
            update(sources)
            .where(sources.c.id == source_id)
            # last_keys []: no document will ever hold its items, so retention prunes them
            # like any source's (the newest 20 stay)
            .values(next_poll_at=NEVER, last_keys=[])
        )
        return url

    async def sync_config_hooks(self, entries: Sequence[ConfigHook], *, now: datetime) -> list[str]:
        """The ``[[hooks]]`` of the config file, by token: made when new, their template
        updated. Returns each entry's source URL, in order (the config sync then
        subscribes its webhook, and disables the subscriptions of entries gone).

        In one transaction, under the config sync's advisory lock on PostgreSQL: processes
        started together would otherwise both make the same new hook, and one would fail."""
        urls: list[str] = []
        if not entries:
            return urls
        async with self.db.write() as conn:
            if self.db.dialect == "postgresql":
                await conn.execute(CONFIG_SYNC_LOCK)
            for entry in entries:
                row = (
                    await conn.execute(
                        select(hooks.c.id).where(hooks.c.token_hash == entry.token_hash)
                    )
                ).first()
                if row is None:
                    urls.append(
                        await self._create_hook(
                            conn, entry.token_hash, entry.template, "config", now
                        )
                    )
                    continue
                await conn.execute(
                    update(hooks)
                    .where(hooks.c.id == row.id)
                    .values(template=entry.template, origin="config")
                )
                urls.append(f"{SOURCE_PREFIX}{row.id}")
        return urls

    async def hook_by_token_hash(self, token_hash: str) -> HookInfo | None:
        """The hook with this token hash, while an enabled subscription posts its items."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(hooks.c.id, hooks.c.source_id, hooks.c.template).where(
                        hooks.c.token_hash == token_hash,
                        exists().where(
                            subscriptions.c.source_id == hooks.c.source_id,
                            subscriptions.c.enabled.is_(True),
                        ),
                    )
                )
            ).first()
        if row is None or row.source_id is None:
            return None
        return HookInfo(int(row.id), int(row.source_id), str(row.template))

    async def count_hook_request(
        self, hook_id: int, *, now: datetime, per_minute: int
    ) -> float | None:
        """Count a request against the hook's rate (a window per minute, shared by every
        process): None when it is within ``per_minute``, else the seconds until the
        window ends (the Retry-After)."""
        window = now.replace(second=0, microsecond=0)
        same = hooks.c.rate_window == window
        count = (
            await self.db.write_one(
                update(hooks)
                .where(hooks.c.id == hook_id)
                .values(
                    rate_count=case((same, hooks.c.rate_count + 1), else_=1),
                    rate_window=window,
                )
                .returning(hooks.c.rate_count)
            )
        ).scalar_one_or_none()
        if count is None or count <= per_minute:
            return None
        return max(1.0, (window + timedelta(minutes=1) - now).total_seconds())

    async def record_hook_item(self, source_id: int, item: Item, *, now: datetime) -> int | None:
        """Store a request's item and queue it for the hook's subscriptions, in one
        transaction; returns the deliveries queued (0 while every subscription is
        paused). None when an item with its key (a sender's retry of a delivery id) is
        already there: nothing is queued twice."""
        (recorded,) = await self.record_polls(
            [
                PollRecord(
                    source_id,
                    [item],
                    outcome=PollOutcome(source_id, now, NEVER, ok=True),
                    meta=None,
                    first_poll=False,
                    to_queue=frozenset({item.key}),
                    pushed=True,
                )
            ]
        )
        return recorded.queued if recorded.new_items else None

    async def delete_orphan_hook(self, source_url: str) -> bool:
        """Remove the hook of ``source_url`` (with its source and items) when no
        subscription posts it any more: removed from Discord, it can never come back, and
        its token must stop working. Config hooks stay: the file may list them again."""
        async with self.db.write() as conn:
            gone = [
                int(r.source_id)
                for r in await conn.execute(
                    select(hooks.c.source_id)
                    .join(sources, sources.c.id == hooks.c.source_id)
                    .where(
                        sources.c.url == source_url,
                        hooks.c.origin != "config",
                        ~exists().where(subscriptions.c.source_id == hooks.c.source_id),
                    )
                )
            ]
            if gone:
                await conn.execute(delete(hooks).where(hooks.c.source_id.in_(gone)))
                await conn.execute(delete(sources).where(sources.c.id.in_(gone)))
            return bool(gone)
