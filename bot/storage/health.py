"""What the operator endpoints read from the database: whether it answers, the outbox
backlog, sources by health, and whether some live process holds the gateway."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import case, func, literal, select

from bot.storage._common import StoreBase, outbox, processes, sources, subscriptions


class HealthMixin(StoreBase):
    async def ping(self) -> None:
        """Raises when the database does not answer."""
        async with self.db.read() as conn:
            await conn.execute(select(literal(1)))

    async def outbox_pending(self) -> int:
        """Deliveries waiting or being sent, over every process."""
        async with self.db.read() as conn:
            result = await conn.execute(
                select(func.count()).where(outbox.c.state.in_(("pending", "sending")))
            )
            return int(result.scalar_one())

    async def source_health_counts(self, stale: Collection[int]) -> dict[str, int]:
        """Sources with an enabled subscription, by health: paused (every subscription
        paused), failing (its last poll failed), stale (in ``stale``), else ok."""
        active = func.sum(case((subscriptions.c.paused.is_(False), 1), else_=0))
        stmt = (
            select(sources.c.id, sources.c.consecutive_failures, active)
            .join(subscriptions, subscriptions.c.source_id == sources.c.id)
            .where(subscriptions.c.enabled.is_(True))
            .group_by(sources.c.id, sources.c.consecutive_failures)
        )
        counts = dict.fromkeys(("ok", "failing", "stale", "paused"), 0)
        async with self.db.read() as conn:
            for source_id, failures, running in await conn.execute(stmt):
                if not running:
                    counts["paused"] += 1
                elif failures:
                    counts["failing"] += 1
                elif source_id in stale:
                    counts["stale"] += 1
                else:
                    counts["ok"] += 1
        return counts

    async def gateway_holder_alive(self, *, now: datetime, dead_after: timedelta) -> bool:
        """Whether a live process (heartbeat within ``dead_after``) holds the gateway."""
        async with self.db.read() as conn:
            result = await conn.execute(
                select(func.count()).where(
                    processes.c.gateway.is_(True), processes.c.heartbeat_at > now - dead_after
                )
            )
            return bool(result.scalar_one())
