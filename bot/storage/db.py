"""Engines, connections and migrations. Storage never blocks the event loop:
SQLite runs in one thread of its own, PostgreSQL through psycopg's async API.

Why SQLite gets a thread rather than aiosqlite under SQLAlchemy's async engine:
that stack crosses threads five times for a one-statement transaction (cursor,
execute, close, commit, the pool's rollback), and each crossing wakes two threads
and the event loop. It cost about 1 ms of CPU per transaction against 0.06 ms
for the same transaction on a plain connection, and the poller and deliverer run
thousands of them per cycle. Here a statement is one crossing (it runs and its
rows are read in the database thread), commit plus release one more, and a
one-statement transaction (``write_one``) a single crossing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, CursorResult, Row
from sqlalchemy.exc import (
    MultipleResultsFound,
    NoResultFound,
    OperationalError,
    ResourceClosedError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.base import Executable

from bot.tasks import WorkerThread

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

T = TypeVar("T")
Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
# Any row, whatever its columns (spelled without SQLAlchemy's private typing helpers,
# so the whole declared SQLAlchemy range imports it).
AnyRow = Row[*tuple[Any, ...]]


class DatabaseError(Exception):
    """The database cannot be used; ``str(e)`` says what to do."""


def driver_url(url: str) -> str:
    """Map the public URL forms to the drivers used inside."""
    if url.startswith("sqlite:///"):
        return "sqlite+pysqlite:///" + url.removeprefix("sqlite:///")
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


class Rows:
    """A statement's outcome, read in full where the statement ran: its rows (when
    it returns any) and its row count. Safe to use from any thread afterwards.
    The subset of SQLAlchemy's ``Result`` the store uses, with the same errors."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, result: CursorResult[*tuple[Any, ...]]) -> None:
        self.rowcount: int = result.rowcount
        self._rows: list[AnyRow] | None = list(result.all()) if result.returns_rows else None
        result.close()

    def all(self) -> list[AnyRow]:
        if self._rows is None:
            raise ResourceClosedError("This result object does not return rows.")
        return self._rows

    def first(self) -> AnyRow | None:
        rows = self.all()
        return rows[0] if rows else None

    def one(self) -> AnyRow:
        rows = self.all()
        if not rows:
            raise NoResultFound("No row was found when one was required")
        if len(rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return rows[0]

    def one_or_none(self) -> AnyRow | None:
        return self.one() if self.all() else None

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalars(self) -> list[Any]:
        """The first column of every row."""
        return [row[0] for row in self.all()]

    def __iter__(self) -> Iterator[AnyRow]:
        return iter(self.all())


def _log_release_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and (exc := done.exception()) is not None:
        log.warning("giving back a read connection failed: %s", exc)


class DbConnection(Protocol):
    """What the store needs of a connection: run a statement inside the current
    transaction and get its :class:`Rows`."""

    async def execute(self, statement: Executable, parameters: Parameters = None) -> Rows: ...


class _AsyncDriverConnection:
    """PostgreSQL: SQLAlchemy's async connection (psycopg), results read in full."""

    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def execute(self, statement: Executable, parameters: Parameters = None) -> Rows:
        return Rows(await self._conn.execute(statement, parameters))


class _IdleConnections:
    """SQLite connections kept open between transactions, used only in the database
    thread. Taking one from here is a list pop; a pool checkout plus a new
    ``Connection`` cost more than the short transactions the bot runs."""

    __slots__ = ("_engine", "_idle", "_keep")

    def __init__(self, engine: Engine, keep: int) -> None:
        self._engine = engine
        self._idle: list[Connection] = []
        self._keep = keep

    def take(self) -> Connection:
        return self._idle.pop() if self._idle else self._engine.connect()

    def give_back(self, conn: Connection, commit: bool) -> None:
        """End the connection's transaction (commit or roll back) and keep it for
        the next one; a connection whose commit or rollback failed is closed."""
        try:
            if commit:
                conn.commit()
            else:
                conn.rollback()
        except BaseException:
            conn.close()
            raise
        if len(self._idle) < self._keep:
            self._idle.append(conn)
        else:
            conn.close()

    def run_committed(self, statement: Executable, parameters: Parameters) -> Rows:
        """``statement`` in a transaction of its own: committed, or rolled back if it fails."""
        conn = self.take()
        try:
            rows = Rows(conn.execute(statement, parameters))
        except BaseException:
            self.give_back(conn, commit=False)
            raise
        self.give_back(conn, commit=True)
        return rows

    def close_all(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _ThreadConnection:
    """SQLite: a connection that lives in the database thread. It is taken by the
    first statement and given back by :meth:`finish`, both in that thread, so a
    transaction is one thread crossing per statement plus one."""

    __slots__ = ("_conn", "_idle", "_run")

    def __init__(
        self, idle: _IdleConnections, run: Callable[[Callable[[], Rows]], asyncio.Future[Rows]]
    ) -> None:
        self._idle = idle
        self._conn: Connection | None = None
        self._run = run

    async def execute(self, statement: Executable, parameters: Parameters = None) -> Rows:
        return await self._run(functools.partial(self._execute, statement, parameters))

    def _execute(self, statement: Executable, parameters: Parameters) -> Rows:
        if self._conn is None:
            self._conn = self._idle.take()
        return Rows(self._conn.execute(statement, parameters))

    def finish(self, commit: bool) -> None:
        """Commit (or roll back) and give the connection back. Runs in the
        database thread."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._idle.give_back(conn, commit)


class Database:
    """One engine plus the small amount of dialect knowledge the queries need."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite:///") else "postgresql"
        self._sqlite: Engine | None = None
        self._async: AsyncEngine | None = None
        self._thread: WorkerThread | None = None
        self._idle: _IdleConnections | None = None
        if self.dialect == "sqlite":
            # The pool must never make the database thread wait for a connection:
            # the one that would free it is queued behind, in the same thread. So
            # no overflow limit; _IdleConnections keeps eight open and closes the rest.
            # hide_parameters (both engines): an error's text, logged, never shows the
            # values bound (webhook tokens, hub secrets).
            self._sqlite = create_engine(
                driver_url(url), echo=echo, pool_size=8, max_overflow=-1, hide_parameters=True
            )
            event.listen(self._sqlite, "connect", _sqlite_pragmas)
            self._thread = WorkerThread("feedhook-db")
            self._idle = _IdleConnections(self._sqlite, keep=8)
        else:
            self._async = create_async_engine(
                driver_url(url), echo=echo, pool_pre_ping=True, hide_parameters=True
            )
        # SQLite has one writer; serialising our own writes avoids busy-waiting
        # on its file lock. PostgreSQL needs no such lock.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None

    def _in_thread(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        assert self._thread is not None
        return self._thread.run(fn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[DbConnection]:
        """A connection inside one transaction, committed on success."""
        if self._async is not None:
            async with self._async.begin() as conn:
                yield _AsyncDriverConnection(conn)
            return
        assert self._write_lock is not None
        async with self._write_lock, self._sqlite_connection(commit=True) as conn:
            yield conn

    async def write_one(self, statement: Executable, parameters: Parameters = None) -> Rows:
        """One statement in a transaction of its own, committed on success.

        On SQLite the statement, its rows and the commit take one crossing into
        the database thread instead of two; the deliverer's sent marks and the
        poller's claims are single statements run hundreds of times a cycle.
        Cancelling the caller does not stop the statement (see below).
        """
        if self._async is not None:
            async with self._async.begin() as conn:
                return Rows(await conn.execute(statement, parameters))
        assert self._write_lock is not None
        assert self._idle is not None
        run = functools.partial(self._idle.run_committed, statement, parameters)
        async with self._write_lock:
            # Cancelling the caller does not stop the statement: it runs and commits in
            # turn, before anything queued after it, so no other transaction waits on it.
            return await self._in_thread(run)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[DbConnection]:
        if self._async is not None:
            async with self._async.connect() as conn:
                yield _AsyncDriverConnection(conn)
            return
        async with self._sqlite_connection(commit=False) as conn:
            yield conn

    @asynccontextmanager
    async def _sqlite_connection(self, *, commit: bool) -> AsyncIterator[_ThreadConnection]:
        assert self._idle is not None
        conn = _ThreadConnection(self._idle, self._in_thread)
        try:
            yield conn
        except BaseException:
            # Also on cancellation: the thread runs this after any statement still
            # under way, so the connection is always rolled back and given back.
            await asyncio.shield(self._in_thread(functools.partial(conn.finish, False)))
            raise
        finishing = self._in_thread(functools.partial(conn.finish, commit))
        if commit:
            await finishing
        else:
            # Nobody needs to wait for a read connection to go back: the thread
            # does it before it runs any later statement.
            finishing.add_done_callback(_log_release_failure)

    async def run_sync(self, fn: Callable[[Connection], T]) -> T:
        """``fn`` with a plain connection, in its own transaction (committed)."""
        if self._async is not None:
            async with self._async.begin() as conn:
                return await conn.run_sync(fn)
        assert self._sqlite is not None
        engine = self._sqlite

        def in_transaction() -> T:
            with engine.begin() as conn:
                return fn(conn)

        return await self._in_thread(in_transaction)

    async def dispose(self) -> None:
        if self._async is not None:
            await self._async.dispose()
            return
        assert self._sqlite is not None
        assert self._thread is not None
        assert self._idle is not None
        # Connections are closed in the thread that opened them.
        await self._in_thread(self._idle.close_all)
        await self._in_thread(self._sqlite.dispose)
        self._thread.stop()

    async def upgrade(self) -> str | None:
        """Bring the schema to the newest migration (idempotent); the revision it was at,
        read under the migration lock (None: no feedhook tables)."""
        try:
            return await self.run_sync(_run_upgrade)
        except OperationalError as exc:
            raise self._unreachable(exc) from None

    async def current_revision(self) -> str | None:
        try:
            return await self.run_sync(
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


# pg_advisory_xact_lock key serialising migrations across processes ("fhmigr" in ASCII):
# several `feedhook run` / `db upgrade` started together on one PostgreSQL database
# otherwise race on CREATE TABLE alembic_version (a UniqueViolation on pg_type).
MIGRATION_LOCK_KEY = 0x66686D69677200


def _run_upgrade(connection: Connection) -> str | None:
    if connection.dialect.name == "postgresql":
        # Held until this transaction ends: the others wait here, then find the schema
        # at head and have nothing to do. (SQLite has one process per file.)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    before = MigrationContext.configure(connection).get_current_revision()
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
    return before
