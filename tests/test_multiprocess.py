"""Several `feedhook` processes on one PostgreSQL database: real subprocesses, each test
with a database of its own (advisory locks are per database)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from bot.storage.db import head_revision
from bot.storage.store import Reaped, Store
from tests.conftest import POSTGRES_URL, T0, Subscribe
from tests.test_storage import item, ok

needs_postgres = pytest.mark.skipif(
    POSTGRES_URL is None, reason="set FEEDHOOK_TEST_POSTGRES_URL to run several processes"
)


@pytest.fixture
def pg_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    assert POSTGRES_URL is not None
    name = f"feedhook_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.split("?", 1)[0].rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def pg_config(tmp_path: Path, url: str, *extra: str) -> Path:
    path = tmp_path / "config.toml"
    lines = ["[database]", f'url = "{url}"', *extra]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def run_cli(*args: str, limit: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@needs_postgres
async def test_migrations_started_together_all_come_up(tmp_path: Path, pg_database: str) -> None:
    config = pg_config(tmp_path, pg_database)
    results = await asyncio.gather(
        *(run_cli("db", "upgrade", "--config", str(config)) for _ in range(5))
    )
    for code, _out, err in results:
        assert code == 0, err
        assert "Traceback" not in err
    outs = sorted(out.strip() for _, out, _ in results)
    head = head_revision()
    # one of them migrated; the others waited, then found nothing to do
    assert outs == [f"database already at revision {head}"] * 4 + [
        f"database upgraded from empty to {head}"
    ]


# -- liveness, in the store (both backends) ----------------------------------------------


async def test_a_dead_process_claims_are_freed_and_a_live_one_keeps_its_own(
    store: Store, subscribe: Subscribe
) -> None:
    await subscribe("https://a.example/feed.xml")
    await subscribe("https://b.example/feed.xml", hook=2)
    dead = await store.register_process(host="h", pid=1, roles=["poller"], now=T0)
    alive = await store.register_process(host="h", pid=2, roles=["poller", "delivery"], now=T0)
    lease = timedelta(minutes=5)
    (mine,) = await store.claim_due_sources(now=T0, limit=1, lease=lease, process=dead)
    (theirs,) = await store.claim_due_sources(now=T0, limit=1, lease=lease, process=alive)
    assert mine.id != theirs.id
    later = T0 + timedelta(seconds=20)
    assert await store.heartbeat(alive, now=later)
    # the dead one beat last 20 s ago; nothing else is due: both sources are claimed
    assert await store.claim_due_sources(now=later, limit=5, lease=lease) == []
    reaped = await store.reap_dead_processes(now=later, dead_after=timedelta(seconds=15))
    assert reaped.processes == (dead,)
    assert reaped.sources >= 1
    # its source is due again at once; the live process's claim stands
    again = await store.claim_due_sources(now=later, limit=5, lease=lease, process=alive)
    assert [s.id for s in again] == [mine.id]
    assert not await store.heartbeat(dead, now=later)  # forgotten: it must register again
    live = await store.live_processes(now=later, dead_after=timedelta(seconds=15))
    assert [(p.id, p.roles) for p in live] == [(alive, ("poller", "delivery"))]
    # reaping again finds nothing
    assert (await store.reap_dead_processes(now=later, dead_after=timedelta(seconds=15))) == (
        Reaped()
    )


async def test_a_dead_senders_deliveries_come_back_in_doubt_at_once(
    store: Store, subscribe: Subscribe
) -> None:
    await subscribe("https://a.example/feed.xml")
    (source,) = await store.claim_due_sources(now=T0, limit=1, lease=timedelta(minutes=5))
    await store.record_items(
        source.id,
        [item("n1")],
        to_queue={"n1"},
        outcome=ok(source.id, at=T0),
        meta=None,
        first_poll=False,
    )
    dead = await store.register_process(host="h", pid=1, roles=["delivery"], now=T0)
    lease = timedelta(seconds=60)
    (job,) = await store.claim_deliveries(now=T0, limit=5, batch=10, lease=lease, process=dead)
    later = T0 + timedelta(seconds=20)
    # still leased for 40 s: nobody else may take it
    assert await store.claim_deliveries(now=later, limit=5, batch=10, lease=lease) == []
    reaped = await store.reap_dead_processes(now=later, dead_after=timedelta(seconds=15))
    assert reaped.deliveries == 1
    (again,) = await store.claim_deliveries(now=later, limit=5, batch=10, lease=lease)
    assert [e.id for e in again.entries] == [e.id for e in job.entries]
    assert all(e.in_doubt for e in again.entries)  # reconciled as after any crash
