"""One ``feedhook run`` per SQLite file, and noticing that file going away.

SQLite serves one relay per database file: two would claim each other's sources
and take over each other's deliveries as if the other had crashed. A running
relay holds an exclusive ``flock`` on ``<database>.lock`` beside the file, which
also records who holds it, so a second ``run`` refuses in one line naming the
holder. The kernel drops the lock when the holder exits, however it exits, so a
crash never leaves the database locked. Read-only commands (``status``,
``check``) take no lock.

flock, not fcntl: fcntl (POSIX) locks belong to the process and vanish when any
descriptor of the file closes, which SQLite does with its own; a flock belongs
to its open file description and ignores them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.storage.db import DatabaseError

# A starting run waits this long for the lock: `feedhook status` holds it shared for
# an instant to see whether a run is there, and must not turn a start away.
ACQUIRE_PATIENCE = 1.0


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///PATH`` URL; None for other databases and memory."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file a path named when the relay opened it."""

    device: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return cls(st.st_dev, st.st_ino)

    @classmethod
    def of_fd(cls, fd: int) -> FileIdentity:
        st = os.fstat(fd)
        return cls(st.st_dev, st.st_ino)


class DatabaseFileLock:
    """The exclusive right to run the relay on one SQLite file, held until :meth:`release`."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = lock_path(database)
        self._fd: int | None = None
        self._opened: FileIdentity | None = None
        self._locked: FileIdentity | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DatabaseError` naming the process that has it."""
        for _ in range(3):
            fd = self._open()
            try:
                _lock_within(fd, fcntl.LOCK_EX, ACQUIRE_PATIENCE)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise DatabaseError(
                    f"the database {self.database} is in use by another feedhook run ({holder}); "
                    "stop that one first, or give this one its own database.url "
                    "(one process per SQLite file; several processes need PostgreSQL)"
                ) from None
            except OSError as exc:
                os.close(fd)
                raise DatabaseError(
                    f"cannot lock {self.path}: {exc.strerror}; keep the SQLite database on a "
                    "local filesystem (network and FUSE mounts may not support file locks)"
                ) from None
            # Locked, but is it still the file that path names? A run that stopped may
            # have emptied it while another process deleted it as stale and made a new one.
            mine = FileIdentity.of_fd(fd)
            if mine == FileIdentity.of(self.path):
                break
            os.close(fd)
        else:
            raise DatabaseError(f"cannot lock {self.path}: it keeps being replaced; try again")
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        record = f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise DatabaseError(f"cannot write {self.path}: {exc.strerror}") from None
        self._fd = fd
        self._locked = mine

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DatabaseError(
                f"cannot create the lock file {self.path}: {exc.strerror}; "
                "check that the database's folder exists and is writable"
            ) from None

    def lock_gone(self) -> str | None:
        """Why the lock this relay holds no longer keeps others out, or None: its file was
        deleted (say, taken for a crash's leftover), so a second run could start."""
        if self._locked is None or FileIdentity.of(self.path) == self._locked:
            return None
        return (
            f"the lock file {self.path} was removed while feedhook was running, so another "
            "run could start on the same database"
        )

    def remember_database(self) -> None:
        """Note which file the database path names now (after it was created or migrated)."""
        self._opened = FileIdentity.of(self.database)

    def database_gone(self) -> str | None:
        """Why the database file this relay opened is no longer there, or None.

        A relay carrying on against a deleted file writes into nothing: the next
        start finds an empty database, treats every source as new, and a backfill
        posts its items a second time.
        """
        if self._opened is None:
            return None
        now = FileIdentity.of(self.database)
        if now is None:
            return f"the database file {self.database} was removed while feedhook was running"
        if now != self._opened:
            return f"the database file {self.database} was replaced while feedhook was running"
        return None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        self._locked = None
        if fd is None:
            return
        # Emptied rather than deleted: removing it would let a process that opened the
        # old file lock it while a third one creates and locks a new one.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor drops the flock


def lock_path(database: Path) -> Path:
    """``<database>.lock``, beside the real file (a symlinked path names the same lock)."""
    real = database.resolve()
    return real.with_name(real.name + ".lock")


def running_relay(database: Path) -> str | None:
    """Who runs the relay on ``database`` ("pid 12 on host, started ..."), or None when
    no run holds its lock. For `feedhook status`; takes the lock shared for an instant."""
    try:
        fd = os.open(lock_path(database), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        except OSError:
            return None  # no flock here: a run could not have started either
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _lock_within(fd: int, operation: int, patience: float) -> None:
    """flock ``fd``, trying again for up to ``patience`` seconds; BlockingIOError after."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "its pid is unknown"
