"""Exactly one process holds the Discord gateway session (PostgreSQL).

Two sessions of one unsharded bot both receive every interaction: one answers, the
other fails with "already acknowledged", and both sync the commands. The holder is
whoever has a session-level advisory lock, taken on a dedicated connection that
lives as long as the holding: PostgreSQL releases the lock when that connection
drops (the process died, or the network between them was cut), and another process
takes it.

The connection sets TCP keepalives so that a cut is noticed in seconds on both
sides: the server frees the lock, and the holder's check fails, so it closes its
gateway session. A new holder waits longer than the holder's check interval
before connecting (:data:`TAKEOVER_DELAY`), so the two sessions never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger(__name__)

# pg_advisory_lock key for the gateway ("fhgate" in ASCII).
GATEWAY_LOCK_KEY: Final = 0x666867617465
# How often a holder checks that it still holds, and others try to take it.
CHECK_INTERVAL: Final = 5.0
# A check that takes longer than this counts as lost (a cut connection hangs).
CHECK_TIMEOUT: Final = 3.0
# A new holder waits this long before connecting: longer than an old holder takes to
# notice it lost the lock (its check interval plus the check's timeout), with room
# for closing its session.
TAKEOVER_DELAY: Final = CHECK_INTERVAL + CHECK_TIMEOUT + 7.0
# libpq keepalives: a silent peer is dropped after about idle + interval * count seconds.
_KEEPALIVES: Final = (
    "keepalives=1 keepalives_idle=3 keepalives_interval=1 keepalives_count=3 "
    "tcp_user_timeout=5000"  # ms: unacknowledged data also ends it
)
# The same on the server's side of the connection: libpq's settings are the client's
# socket only, and the server's defaults (2 h) would keep a dead holder's lock that long.
_SERVER_KEEPALIVES: Final = (
    "SET tcp_keepalives_idle = 3",
    "SET tcp_keepalives_interval = 1",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 5000",
)


def _keepalive_options() -> dict[str, str | int | None]:
    return {key: str(value) for key, value in conninfo_to_dict(_KEEPALIVES).items()}


class GatewayLock:
    """The gateway lock of one database, held on a connection of its own."""

    def __init__(self, url: str) -> None:
        # the public URL form (postgresql://...) is a libpq conninfo URI already
        self.url = url
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    async def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits for it."""
        if self._conn is not None:
            return True
        try:
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(
                    make_conninfo(self.url, **_keepalive_options()), autocommit=True
                ),
                CHECK_TIMEOUT * 2,
            )
        except (psycopg.Error, OSError, TimeoutError) as exc:
            log.warning("cannot reach the database for the gateway lock: %s", exc)
            return False
        try:
            for statement in _SERVER_KEEPALIVES:
                await conn.execute(statement)
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (GATEWAY_LOCK_KEY,))
            row = await cursor.fetchone()
        except psycopg.Error as exc:
            log.warning("cannot take the gateway lock: %s", exc)
            await conn.close()
            return False
        if not (row and row[0]):
            await conn.close()
            return False
        self._conn = conn
        return True

    async def still_held(self) -> bool:
        """Whether the lock's connection is alive (so the lock is still ours); a failed
        or slow check drops the connection and, with it, the lock."""
        conn = self._conn
        if conn is None:
            return False
        check = asyncio.ensure_future(conn.execute("SELECT 1"))
        done, _ = await asyncio.wait({check}, timeout=CHECK_TIMEOUT)
        if not done:
            # Cut the socket now: cancelling the query the polite way asks the server
            # first, which takes seconds more on a dead link.
            self._conn = None
            conn.pgconn.finish()
            check.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({check}, timeout=1.0)
            log.warning("lost the gateway lock's connection: no answer in %.0fs", CHECK_TIMEOUT)
            return False
        if (error := check.exception()) is not None:
            log.warning("lost the gateway lock's connection: %s", error)
            await self.release()
            return False
        return True

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Closing the session releases the lock; no unlock call that could hang.
            with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
                await asyncio.wait_for(conn.close(), CHECK_TIMEOUT)
