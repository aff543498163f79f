"""Engines, connections and migrations. Storage never blocks the event loop:
SQLite goes through aiosqlite's thread, PostgreSQL through psycopg's async API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class DatabaseError(Exception):
    """The database cannot be used; ``str(e)`` says what to do."""


def driver_url(url: str) -> str:
    """Map the public URL forms to the async drivers used inside."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    raise DatabaseError(f"unsupported database URL scheme in {redact_url(url)!r}")


def redact_url(url: str) -> str:
    """Hide a password in a database URL before it reaches a log or an error."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    creds, _, host = rest.partition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # WAL lets readers (status, slash commands) run while the poller writes;
    # NORMAL sync is durable across process crashes, which is what we need.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Database:
    """One engine plus the small amount of dialect knowledge the queries need."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(
            driver_url(url), echo=echo, pool_pre_ping=url.startswith("postgresql")
        )
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        # SQLite has one writer; serialising our own writes avoids busy-waiting
        # on its file lock. PostgreSQL needs no such lock.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction, committed on success."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(_run_upgrade)
        except OperationalError as exc:
            raise self._unreachable(exc) from None

    async def current_revision(self) -> str | None:
        try:
            async with self.engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
        except OperationalError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: OperationalError) -> DatabaseError:
        reason = " ".join(str(exc.orig).split())
        return DatabaseError(
            f"cannot open database {redact_url(self.url)}: {reason}; "
            "check database.url and that the server is running"
        )


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _run_upgrade(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
