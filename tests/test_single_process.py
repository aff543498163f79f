"""One ``feedhook run`` per SQLite file: a second one refuses, read-only commands keep
working beside it, and a database file removed under a running relay stops it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from bot.storage.db import DatabaseError
from bot.storage.filelock import DatabaseFileLock, running_relay, sqlite_path
from tests.conftest import Doc, FeedServer
from tests.test_cli import db_rows, feedhook, start_run, wait_for, write_config
from tests.test_poller import rss


async def started(db: Path) -> None:
    """Wait until a run has polled (its database has items)."""
    await wait_for(lambda: db_rows(db, "SELECT count(*) FROM items") not in ([], [(0,)]))


def remove_database(db: Path, *, replace: bool) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if replace:
        db.write_bytes(b"")


def one_feed(tmp_path: Path, feed_server: FeedServer) -> Path:
    """A config relaying one loopback feed of one item, polled every second."""
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    return write_config(tmp_path, feeds=[feed_server.url("/f.xml")], interval="1s")


async def holding_the_lock(proc: asyncio.subprocess.Process, db: Path) -> None:
    """Wait until ``proc`` holds the database's lock: it is past its imports (which take
    seconds on a busy machine) and has its signal handlers, so SIGTERM stops it cleanly."""
    lock = Path(f"{db}.lock")
    await wait_for(
        lambda: (
            proc.returncode is not None
            or (lock.exists() and f"pid {proc.pid} " in lock.read_text(encoding="utf-8"))
        )
    )


async def stop(proc: asyncio.subprocess.Process) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()
    return err.decode()


async def test_a_second_run_on_the_same_file_is_refused(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = one_feed(tmp_path, feed_server)
    db = tmp_path / "feedhook.db"
    first = await start_run(config)
    try:
        await started(db)
        code, out, err = await feedhook("run", "--config", str(config), limit=30)
        assert code == 1
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"feedhook: the database {db} is in use by another feedhook run")
        assert f"pid {first.pid} on " in lines[0]
        assert "one process per SQLite file" in lines[0]
        # the read-only commands keep working beside the running relay
        code, out, err = await feedhook("status", "--config", str(config))
        assert code == 0, err
        assert "Test feed" in out
        code, out, err = await feedhook("check", "--config", str(config), feed_server.url("/f.xml"))
        assert code == 0, err
        assert "Test feed" in out
    finally:
        if first.returncode is None:
            await stop(first)
    # the lock goes with the process: the next run starts
    again = await start_run(config)
    await holding_the_lock(again, db)
    assert again.returncode is None
    await stop(again)


async def test_a_killed_run_leaves_no_lock_behind(tmp_path: Path, feed_server: FeedServer) -> None:
    config = one_feed(tmp_path, feed_server)
    db = tmp_path / "feedhook.db"
    proc = await start_run(config)
    await started(db)
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    assert (tmp_path / "feedhook.db.lock").exists()  # the file stays; the lock does not
    again = await start_run(config)
    await holding_the_lock(again, db)
    assert again.returncode is None
    err = await stop(again)
    assert "in use by another" not in err


async def start_debug_run(config: Path) -> asyncio.subprocess.Process:
    """A run in asyncio's debug mode, which raises on event-loop calls made from other
    threads (APScheduler runs plain functions in a thread pool)."""
    return await start_run(config, env={**os.environ, "PYTHONASYNCIODEBUG": "1"})


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_database_file_removed_while_running_stops_the_run(
    tmp_path: Path, feed_server: FeedServer, how: str
) -> None:
    config = one_feed(tmp_path, feed_server)
    db = tmp_path / "feedhook.db"
    proc = await start_debug_run(config)
    await started(db)
    remove_database(db, replace=how == "replaced")
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 1, err.decode()
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith(f"feedhook: the database file {db} was {how} while feedhook was running")
    assert "stopped so that nothing is posted twice" in last
    assert "Traceback" not in err.decode()


async def test_a_lock_file_removed_while_running_stops_the_run(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = one_feed(tmp_path, feed_server)
    db = tmp_path / "feedhook.db"
    proc = await start_debug_run(config)
    await started(db)
    # taken for a crash's leftover: a second run could now lock a new file
    (tmp_path / "feedhook.db.lock").unlink()
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 1, err.decode()
    last = err.decode().strip().splitlines()[-1]
    assert last == (
        f"feedhook: the lock file {tmp_path / 'feedhook.db.lock'} was removed while feedhook "
        "was running, so another run could start on the same database; stopped so that two "
        "relays never share it: start again once no other feedhook run uses the database"
    )


def test_the_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    database = tmp_path / "feedhook.db"
    first = DatabaseFileLock(database)
    # a symlinked path to the same database names the same lock
    (tmp_path / "link.db").symlink_to(database)
    first.acquire()
    try:
        with pytest.raises(DatabaseError) as refused:
            DatabaseFileLock(database).acquire()
        assert f"pid {os.getpid()} on " in str(refused.value)
        with pytest.raises(DatabaseError):
            DatabaseFileLock(tmp_path / "link.db").acquire()
    finally:
        first.release()
    second = DatabaseFileLock(database)
    second.acquire()  # free again once released
    second.release()


def test_only_sqlite_files_are_locked() -> None:
    assert sqlite_path("sqlite:///data/feedhook.db") == Path("data/feedhook.db")
    assert sqlite_path("sqlite:////abs/feedhook.db") == Path("/abs/feedhook.db")
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://postgres@127.0.0.1:5432/test") is None


def test_the_database_file_identity_is_watched(tmp_path: Path) -> None:
    database = tmp_path / "feedhook.db"
    database.write_bytes(b"x")
    lock = DatabaseFileLock(database)
    lock.acquire()
    # held open, as SQLite holds it: otherwise a new file may get the old inode number
    opened = database.open("rb")
    try:
        lock.remember_database()
        assert lock.database_gone() is None
        database.unlink()
        assert "was removed" in (lock.database_gone() or "")
        database.write_bytes(b"y")  # a new file under the same name
        assert "was replaced" in (lock.database_gone() or "")
    finally:
        opened.close()
        lock.release()


def test_status_sees_a_running_relay_without_getting_in_its_way(tmp_path: Path) -> None:
    database = tmp_path / "feedhook.db"
    assert running_relay(database) is None  # never run: no lock file
    lock = DatabaseFileLock(database)
    lock.acquire()
    try:
        holder = running_relay(database)
        assert holder is not None
        assert holder.startswith(f"pid {os.getpid()} on ")
    finally:
        lock.release()
    assert running_relay(database) is None  # stopped: the file stays, empty and unlocked
