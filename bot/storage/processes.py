"""Processes: every ``feedhook run`` registers itself and beats a heartbeat; the
others take over the claims of one whose heartbeat stopped.

Liveness the database sees, not a long lease: a process killed (SIGKILL, power
loss, a network cut) holds source claims for up to 5 minutes and delivery leases
for a minute. With its heartbeat ``dead_after`` seconds old, any live process frees
them at once (:meth:`ProcessesMixin.reap_dead_processes`): its sources are due
again (the one poll it left unfinished may be retried at once), and its deliveries
become in doubt, reconciled as after any crash (the channel's history with a bot
token, else sent again and logged).

Times are the processes' own clocks (aware UTC); hosts are expected to keep them
within a few seconds of each other (NTP), far below ``dead_after``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, insert, select, text, update

from bot.storage._common import StoreBase, outbox, processes, sources
from bot.storage.db import DbConnection


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A registered process, as ``feedhook status`` lists it."""

    id: int
    host: str
    pid: int
    roles: tuple[str, ...]
    started_at: datetime
    heartbeat_at: datetime
    gateway: bool


@dataclass(frozen=True, slots=True)
class Reaped:
    """What freeing dead processes' claims did."""

    processes: tuple[int, ...] = ()
    sources: int = 0
    deliveries: int = 0


class ProcessesMixin(StoreBase):
    """Process registration, heartbeats, and taking over a dead process's claims."""

    async def register_process(
        self, *, host: str, pid: int, roles: Iterable[str], now: datetime
    ) -> int:
        async with self.db.write() as conn:
            result = await conn.execute(
                insert(processes)
                .values(
                    host=host,
                    pid=pid,
                    roles=",".join(roles),
                    started_at=now,
                    heartbeat_at=now,
                    gateway=False,
                )
                .returning(processes.c.id)
            )
            return int(result.scalar_one())

    async def heartbeat(self, process_id: int, *, now: datetime) -> bool:
        """Say ``process_id`` is alive; False when its row is gone (the others took it
        for dead and freed its claims)."""
        result = await self.db.write_one(_HEARTBEAT, {"b_id": process_id, "b_now": now})
        return bool(result.rowcount)

    async def set_gateway_holder(self, process_id: int, holds: bool) -> None:
        await self.db.write_one(
            update(processes).where(processes.c.id == process_id).values(gateway=holds)
        )

    async def deregister_process(self, process_id: int, *, now: datetime) -> None:
        """A clean stop: what it still holds (work that outlasted the stop's grace)
        goes to the others at once, as if it had died, and its row goes."""
        async with self.db.write() as conn:
            await self._free_claims(conn, [process_id], now)
            await conn.execute(delete(processes).where(processes.c.id == process_id))

    async def _free_claims(self, conn: DbConnection, dead: list[int], now: datetime) -> Reaped:
        freed_sources = await conn.execute(
            update(sources)
            .where(sources.c.claimed_by.in_(dead), sources.c.claimed_until > now)
            .values(claimed_until=None, claimed_by=None)
        )
        # Their lease ends now: the next claim takes them as in doubt.
        freed_deliveries = await conn.execute(
            update(outbox)
            .where(
                outbox.c.claimed_by.in_(dead),
                outbox.c.state == "sending",
                outbox.c.lease_until > now,
            )
            .values(lease_until=now)
        )
        return Reaped(tuple(dead), int(freed_sources.rowcount), int(freed_deliveries.rowcount))

    async def forget_processes(self) -> int:
        """Remove every process row. Only for a sole process that has just started
        (SQLite: one relay per file), after releasing its predecessor's claims."""
        result = await self.db.write_one(delete(processes))
        return int(result.rowcount)

    async def live_processes(self, *, now: datetime, dead_after: timedelta) -> list[ProcessInfo]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(
                    processes.c.id,
                    processes.c.host,
                    processes.c.pid,
                    processes.c.roles,
                    processes.c.started_at,
                    processes.c.heartbeat_at,
                    processes.c.gateway,
                )
                .where(processes.c.heartbeat_at >= now - dead_after)
                .order_by(processes.c.id)
            )
            return [
                ProcessInfo(
                    id=int(r[0]),
                    host=str(r[1]),
                    pid=int(r[2]),
                    roles=tuple(role for role in str(r[3]).split(",") if role),
                    started_at=r[4],
                    heartbeat_at=r[5],
                    gateway=bool(r[6]),
                )
                for r in rows
            ]

    async def reap_dead_processes(self, *, now: datetime, dead_after: timedelta) -> Reaped:
        """Free the claims of every process whose heartbeat is ``dead_after`` old, and
        forget it. Safe to run in every process at once: on PostgreSQL each dead
        row is taken by one of them (``SKIP LOCKED``)."""
        dead_rows = select(processes.c.id).where(processes.c.heartbeat_at < now - dead_after)
        if self.db.dialect == "postgresql":
            dead_rows = dead_rows.with_for_update(skip_locked=True)
        async with self.db.write() as conn:
            if self.db.dialect == "postgresql":
                # A dead process's backend may still hold row locks (a transaction it
                # never finished): wait a little, not for as long as it takes.
                await conn.execute(text("SET LOCAL lock_timeout = '2s'"))
            dead = [int(r[0]) for r in await conn.execute(dead_rows)]
            if not dead:
                return Reaped()
            reaped = await self._free_claims(conn, dead, now)
            await conn.execute(delete(processes).where(processes.c.id.in_(dead)))
        return reaped


# -- statements built once (why: see _common.py) ---------------------------------------

_HEARTBEAT = (
    update(processes)
    .where(processes.c.id == bindparam("b_id"))
    .values(heartbeat_at=bindparam("b_now"))
)
