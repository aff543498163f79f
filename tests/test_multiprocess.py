"""Several `feedhook` processes on one PostgreSQL database: real subprocesses, each test
with a database of its own (advisory locks are per database)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from bot.storage.db import head_revision
from bot.storage.gateway_lock import TAKEOVER_DELAY, GatewayLock
from bot.storage.store import Reaped, Store
from tests.conftest import POSTGRES_URL, T0, Doc, FeedServer, Subscribe
from tests.fakes.fake_discord import MANAGE_WEBHOOKS, VIEW_CHANNEL, FakeDiscord
from tests.test_cli import db_rows, feedhook, wait_for
from tests.test_poller import rss
from tests.test_storage import item, ok

needs_postgres = pytest.mark.skipif(
    POSTGRES_URL is None, reason="set FEEDHOOK_TEST_POSTGRES_URL to run several processes"
)


def pg_config(tmp_path: Path, url: str, *extra: str) -> Path:
    path = tmp_path / "config.toml"
    lines = ["[database]", f'url = "{url}"', *extra]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@needs_postgres
async def test_migrations_started_together_all_come_up(tmp_path: Path, pg_database: str) -> None:
    config = pg_config(tmp_path, pg_database)
    results = await asyncio.gather(
        *(feedhook("db", "upgrade", "--config", str(config)) for _ in range(5))
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


# -- the gateway lock ----------------------------------------------------------------


@needs_postgres
async def test_one_gateway_lock_holder_at_a_time(pg_database: str) -> None:
    first, second = GatewayLock(pg_database), GatewayLock(pg_database)
    try:
        assert await first.try_acquire()
        assert not await second.try_acquire()
        assert await first.still_held()
        await first.release()
        assert await second.try_acquire()
        # the holder's connection is cut (as by a network failure): the lock is free, and
        # the holder's next check says it lost it
        with psycopg.connect(pg_database, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted"
            )
        assert not await second.still_held()
        assert not second.held
        assert await first.try_acquire()
    finally:
        await first.release()
        await second.release()


# -- real `feedhook run` processes on one database --------------------------------------

TOKEN = "multi-process-bot-token"
GUILD, NEWS, ADMIN = 940_000_000_000_000_001, 940_000_000_000_000_010, 940_000_000_000_000_020


def run_config(
    tmp_path: Path,
    url: str,
    fake: FakeDiscord,
    *,
    token: bool = False,
    feeds: Sequence[tuple[str, int]] = (),
    interval: str = "1s",
    delivery: Sequence[str] = (),
) -> Path:
    lines = [
        "[database]",
        f'url = "{url}"',
        "[discord]",
        f'api_base = "{fake.api_base}"',
        f'gateway_url = "{fake.gateway_url}"',
        f'token = "{TOKEN if token else ""}"',
        f"guild_ids = [{GUILD}]",
        "[polling]",
        f'interval = "{interval}"',
        'min_interval = "1s"',
        "jitter = 0",
        'allowed_hosts = ["127.0.0.1"]',
        'timeout = "5s"',
        "[delivery]",
        *delivery,
    ]
    for feed_url, hook in feeds:
        lines += [
            "[[feeds]]",
            f'url = "{feed_url}"',
            f'webhook = "{fake.webhook_url(hook)}"',
            "batch = false",
        ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Runs:
    """`feedhook run` subprocesses whose stderr goes to files (a pipe nobody reads
    would fill and block the process)."""

    def __init__(self, tmp_path: Path, config: Path) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.procs: list[asyncio.subprocess.Process] = []
        self.logs: dict[int, Path] = {}
        self._started = 0

    async def start(self, *roles: str) -> asyncio.subprocess.Process:
        self._started += 1  # before any await: starts may run concurrently
        log = (self.tmp_path / f"run{self._started - 1}.log").open("wb")
        extra = ["--role", ",".join(roles)] if roles else []
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            "--config",
            str(self.config),
            *extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        self.procs.append(proc)
        self.logs[proc.pid] = Path(log.name)
        return proc

    def log(self, proc: asyncio.subprocess.Process) -> str:
        return self.logs[proc.pid].read_text(encoding="utf-8", errors="replace")

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            await asyncio.wait_for(proc.wait(), 20)


async def query(url: str, sql: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        try:
            cursor = await conn.execute(sql)
        except psycopg.errors.UndefinedTable:  # not migrated yet
            return []
        return list(await cursor.fetchall())


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)


def discord_with_a_channel(fake: FakeDiscord) -> None:
    fake.add_guild(GUILD, name="Harbour")
    fake.add_channel(NEWS, guild_id=GUILD, name="news")
    fake.add_member(GUILD, ADMIN, permissions=MANAGE_WEBHOOKS | VIEW_CHANNEL)


async def answered_once(fake: FakeDiscord) -> None:
    interaction = await fake.invoke(GUILD, NEWS, ADMIN, "feed", "list", {})
    message = await interaction.wait_for_response(within=15)
    assert message.ephemeral
    await asyncio.sleep(1.0)  # room for a second answer, were there a second session
    assert len(interaction.delivered_to) == 1
    assert len(interaction.responses) == 1


@needs_postgres
async def test_one_gateway_session_at_a_time_and_a_takeover_after_a_kill(
    tmp_path: Path, pg_database: str
) -> None:
    async with FakeDiscord(bot_token=TOKEN, webhook_limit=None, channel_limit=None) as fake:
        discord_with_a_channel(fake)
        config = run_config(tmp_path, pg_database, fake, token=True)
        runs = Runs(tmp_path, config)
        try:
            # three processes started at the same moment all come up
            procs = await asyncio.gather(*(runs.start() for _ in range(3)))
            await fake.wait_for_open_sessions(1, within=40)
            # longer than a would-be second holder needs to connect
            await asyncio.sleep(TAKEOVER_DELAY + 2)
            assert all(p.returncode is None for p in procs)
            assert fake.max_concurrent_sessions == 1
            assert fake.command_sync_count == 1  # only the holder synced the commands
            await answered_once(fake)
            ((holder_pid,),) = await query(pg_database, "SELECT pid FROM processes WHERE gateway")
            holder = next(p for p in procs if p.pid == holder_pid)
            killed_at = time.monotonic()
            holder.kill()
            await holder.wait()
            await fake.wait_for_open_sessions_at_most(0, within=10)
            await fake.wait_for_open_sessions(1, within=30)
            assert time.monotonic() - killed_at < 30
            assert fake.session_overlaps() == []
            await answered_once(fake)
            # the dead one is forgotten; status lists the two live ones, one at the gateway
            await eventually(
                lambda: _is(pg_database, "SELECT count(*) FROM processes", 2), within=30
            )
            code, out, err = await feedhook("status", "--config", str(config))
            assert code == 0, err
            listed = [line for line in out.splitlines() if line.startswith("process ")]
            assert len(listed) == 2
            assert sum("holds the Discord gateway" in line for line in listed) == 1
            assert all(": bot,delivery,poller on " in line for line in listed)
        finally:
            await runs.stop()
        assert all(p.returncode in (0, -signal.SIGKILL) for p in runs.procs)
        for proc in runs.procs:
            assert "40060" not in runs.log(proc)
            assert "Traceback" not in runs.log(proc)


async def _count(url: str, sql: str) -> int:
    rows = await query(url, sql)
    return int(str(rows[0][0])) if rows else 0


@needs_postgres
async def test_a_killed_senders_deliveries_resume_elsewhere_within_30s(
    tmp_path: Path, pg_database: str, feed_server: FeedServer
) -> None:
    async with FakeDiscord(webhook_limit=None, channel_limit=None) as fake:
        discord_with_a_channel(fake)
        hooks = [fake.add_webhook(NEWS, guild_id=GUILD)[0] for _ in range(3)]
        names = [f"/f{n}.xml" for n in range(3)]
        for name in names:
            feed_server.docs[name] = Doc(rss([(f"{name}-1", f"{name} one")]))
        config = run_config(
            tmp_path,
            pg_database,
            fake,
            feeds=[(feed_server.url(name), hook) for name, hook in zip(names, hooks, strict=True)],
            interval="2s",
        )
        runs = Runs(tmp_path, config)
        try:
            first = await runs.start()
            await eventually(lambda: _is(pg_database, "SELECT count(*) FROM items", 3))
            # the first process's posts hang: Discord never answers them
            fake.hang_next(count=3, seconds=120)
            for name in names:
                newest_first = [(f"{name}-{n}", f"{name} {w}") for n, w in NUMBERS]
                feed_server.docs[name] = Doc(rss(newest_first))
            await eventually(
                lambda: _is(pg_database, "SELECT count(*) FROM outbox WHERE state='sending'", 6)
            )
            second = await runs.start()
            await eventually(lambda: _is(pg_database, "SELECT count(*) FROM processes", 2))
            killed_at = time.monotonic()
            first.kill()
            await first.wait()
            messages = await fake.wait_for_messages(6, within=30)
            assert time.monotonic() - killed_at < 30
            await asyncio.sleep(2)  # room for a duplicate to show up
            titles = sorted(m.embeds[0]["title"] for m in fake.messages())
            assert titles == sorted(f"{name} {n}" for name in names for n in ("two", "three")), (
                messages
            )
            assert "took over from processes that stopped beating" in runs.log(second)
        finally:
            await runs.stop()
        # every source polled at least an interval apart, but for the poll the dead
        # process may have left unfinished
        assert await _is(pg_database, "SELECT count(*) FROM outbox WHERE state <> 'sent'", 0)


NUMBERS = ((3, "three"), (2, "two"), (1, "one"))


async def _is(url: str, sql: str, expected: int) -> bool:
    return await _count(url, sql) == expected


@needs_postgres
async def test_two_processes_share_the_global_rate(
    tmp_path: Path, pg_database: str, feed_server: FeedServer
) -> None:
    rate = 4
    async with FakeDiscord(webhook_limit=None, channel_limit=None) as fake:
        discord_with_a_channel(fake)
        # a channel each: Discord also limits messages per channel (30 a minute)
        hooks = [fake.add_webhook(NEWS + 1 + n, guild_id=GUILD)[0] for n in range(8)]
        names = [f"/r{n}.xml" for n in range(8)]
        for name in names:
            feed_server.docs[name] = Doc(rss([(f"{name}-0", f"{name} 0")]))
        config = run_config(
            tmp_path,
            pg_database,
            fake,
            feeds=[(feed_server.url(name), hook) for name, hook in zip(names, hooks, strict=True)],
            # four subscriptions at a time each: both processes get some
            delivery=[f"global_rate = {rate}", "concurrency = 4"],
        )
        runs = Runs(tmp_path, config)
        try:
            procs = [await runs.start(), await runs.start()]
            await eventually(lambda: _is(pg_database, "SELECT count(*) FROM items", 8))
            await eventually(lambda: _is(pg_database, "SELECT count(*) FROM processes", 2))
            await asyncio.sleep(4)  # a heartbeat each: both know they are two
            for name in names:
                feed_server.docs[name] = Doc(
                    rss([(f"{name}-{n}", f"{name} {n}") for n in range(4, -1, -1)])
                )
            await fake.wait_for_messages(32, within=60)
        finally:
            await runs.stop()
        times = sorted(m.created_at for m in fake.messages())
        busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
        # one process alone would go at `rate`; two unshared at twice that
        assert busiest <= rate + 1, busiest
        assert all("posted url=" in runs.log(p) for p in procs)  # both sent some


# -- roles -----------------------------------------------------------------------------


async def test_bot_role_without_a_token_is_refused_in_one_line(tmp_path: Path) -> None:
    config = pg_config(tmp_path, f"sqlite:///{tmp_path / 'feedhook.db'}")
    code, out, err = await feedhook("run", "--config", str(config), "--role", "bot,poller")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "feedhook: --role bot answers slash commands, which needs a bot token: set "
        "discord.token in the config file or FEEDHOOK_DISCORD_TOKEN"
    ]
    code, _, err = await feedhook("run", "--config", str(config), "--role", "poler")
    assert code == 2
    assert "poler is not a role; give a comma-separated subset of poller, delivery, bot" in err


async def test_a_poller_queues_and_a_delivery_process_sends(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    db = tmp_path / "feedhook.db"
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    async with FakeDiscord(webhook_limit=None, channel_limit=None) as fake:
        discord_with_a_channel(fake)
        hook, _ = fake.add_webhook(NEWS, guild_id=GUILD)
        config = run_config(
            tmp_path, f"sqlite:///{db}", fake, feeds=[(feed_server.url("/f.xml"), hook)]
        )
        runs = Runs(tmp_path, config)
        poller = await runs.start("poller")
        await wait_for(lambda: db_rows(db, "SELECT count(*) FROM items") == [(1,)])
        feed_server.docs["/f.xml"] = Doc(rss([("b", "B"), ("a", "A")]))
        await wait_for(lambda: db_rows(db, "SELECT state FROM outbox") == [("pending",)])
        await asyncio.sleep(1.5)
        assert fake.messages() == []  # a poller does not deliver
        await runs.stop()
        assert poller.returncode == 0
        polls = feed_server.hits["/f.xml"]
        sender = await runs.start("delivery")
        (message,) = await fake.wait_for_messages(1, within=20)
        assert message.embeds[0]["title"] == "B"
        await runs.stop()
        assert sender.returncode == 0
        assert "roles=delivery" in runs.log(sender)
        assert feed_server.hits["/f.xml"] == polls  # and a delivery process polls nothing
