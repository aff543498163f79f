"""WebSub push and inbound hooks across several real `feedhook run` processes on one
PostgreSQL database: each process listens on a port of its own (`run --listen`), and
the shared http.public_url names process A only, so hubs call A whichever process asked
them. Each test has a database of its own, a loopback feed server, a FakeHub and a
FakeDiscord as the webhook target."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import Doc, FeedServer
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_hub import FakeHub
from tests.test_multiprocess import eventually, needs_postgres, query
from tests.test_push import atom, free_port

GUILD, NEWS = 950_000_000_000_000_001, 950_000_000_000_000_010
HOOK_TOKEN = "h00k-t0ken-" + "k" * 29  # 40 characters
# The subscriber looks every 30 s, the first time at start; the hub is announced after
# that, so the subscription is made on the next look, about 30 s in.
SUBSCRIBED_WITHIN = 45.0
INITIALIZED = "SELECT count(*) FROM sources WHERE initialized"


async def is_(url: str, sql: str, expected: int) -> bool:
    return await query(url, sql) == [(expected,)]


def config_file(
    tmp_path: Path,
    url: str,
    fake: FakeDiscord,
    *,
    public_port: int,
    extra: Sequence[str] = (),
) -> Path:
    lines = [
        "[database]",
        f'url = "{url}"',
        "[discord]",
        f'api_base = "{fake.api_base}"',
        "[polling]",
        'interval = "2s"',
        'min_interval = "1s"',
        "jitter = 0",
        "allow_private_addresses = true",
        'timeout = "5s"',
        "[http]",
        f'public_url = "http://127.0.0.1:{public_port}"',
        *extra,
    ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Processes:
    """`feedhook run --listen` subprocesses on one config; stdout and stderr go to a
    file each (a pipe nobody reads would fill and block the process)."""

    def __init__(self, tmp_path: Path, config: Path) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.procs: list[asyncio.subprocess.Process] = []
        self.logs: dict[int, Path] = {}

    async def start(self, name: str, port: int) -> asyncio.subprocess.Process:
        path = self.tmp_path / f"{name}.log"
        with path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                "--config",
                str(self.config),
                "--listen",
                f"127.0.0.1:{port}",
                stdout=log,
                stderr=log,
            )
        self.procs.append(proc)
        self.logs[proc.pid] = path
        return proc

    def log(self, proc: asyncio.subprocess.Process) -> str:
        return self.logs[proc.pid].read_text(encoding="utf-8", errors="replace")

    def all_logs(self) -> str:
        return "\n".join(f"--- pid {p.pid}:\n{self.log(p)}" for p in self.procs)

    async def ready(self, proc: asyncio.subprocess.Process, port: int) -> None:
        """Until the process answers /healthz (it has synced the config by then)."""

        async def up() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"exited {proc.returncode}:\n{self.log(proc)}")
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{port}/healthz") as resp,
                ):
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(up, within=30)

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            await asyncio.wait_for(proc.wait(), 20)


async def start_two(
    runs: Processes, pa: int, pb: int
) -> tuple[asyncio.subprocess.Process, asyncio.subprocess.Process]:
    """A and B started at the same moment, both serving."""
    a, b = await asyncio.gather(runs.start("a", pa), runs.start("b", pb))
    await asyncio.gather(runs.ready(a, pa), runs.ready(b, pb))
    return a, b


def stopped_cleanly(runs: Processes) -> None:
    assert [p.returncode for p in runs.procs] == [0] * len(runs.procs), runs.all_logs()
    assert "Traceback" not in runs.all_logs(), runs.all_logs()


# -- WebSub ---------------------------------------------------------------------------


@needs_postgres
async def test_websub_across_processes(
    tmp_path: Path, pg_database: str, feed_server: FeedServer
) -> None:
    pa, pb = free_port(), free_port()
    async with FakeHub() as hub, FakeDiscord(webhook_limit=None) as fake:
        fake.add_guild(GUILD, name="Harbour")
        fake.add_channel(NEWS, guild_id=GUILD, name="news")
        webhook, _ = fake.add_webhook(NEWS, guild_id=GUILD)
        topic = feed_server.url("/news.xml")
        first_doc = atom(topic, [("a2", "Second story"), ("a1", "First story")])
        feed_server.docs["/news.xml"] = Doc(first_doc, content_type="application/atom+xml")
        config = config_file(
            tmp_path,
            pg_database,
            fake,
            public_port=pa,
            extra=["[[feeds]]", f'url = "{topic}"', f'webhook = "{fake.webhook_url(webhook)}"'],
        )
        runs = Processes(tmp_path, config)
        try:
            started = time.monotonic()
            a, b = await start_two(runs, pa, pb)
            # The hub is announced once the first poll is done (and with a new entry: a
            # document whose entries did not change is not looked at again), so both
            # processes' subscribers, started together, find it on their look at 30 s.
            await eventually(lambda: is_(pg_database, INITIALIZED, 1))
            assert fake.messages(webhook_id=webhook) == []  # a first poll posts nothing
            third = [("a3", "Third story"), ("a2", "Second story"), ("a1", "First story")]
            feed_server.docs["/news.xml"] = Doc(
                atom(topic, third),
                content_type="application/atom+xml",
                headers={"Link": f'<{hub.url}>; rel="hub", <{topic}>; rel="self"'},
            )
            await fake.wait_for_messages(1, webhook_id=webhook, within=15)
            assert await query(pg_database, "SELECT hub_url FROM sources") == [(hub.url,)]
            subscription = await hub.wait_for_subscription(
                topic, timeout=SUBSCRIBED_WITHIN - (time.monotonic() - started)
            )
            subscribed_after = time.monotonic() - started
            # both processes' looks at 30 s (their starts were close) have run by now
            await asyncio.sleep(3)
            assert len(hub.requests) == 1, hub.requests
            (request,) = hub.requests
            assert request["hub.mode"] == "subscribe"
            assert request["hub.topic"] == topic
            assert request["hub.callback"].startswith(f"http://127.0.0.1:{pa}/websub/")
            assert subscription.callback == request["hub.callback"]
            assert await query(pg_database, "SELECT count(*) FROM websub") == [(1,)]
            # one of them asked; the hub verified through A, the public URL
            askers = [p for p in (a, b) if "websub subscribe requested" in runs.log(p)]
            assert len(askers) == 1, runs.all_logs()
            (verification,) = hub.verifications
            assert (verification.mode, verification.status, verification.echoed) == (
                "subscribe",
                200,
                True,
            )
            assert verification.callback.startswith(f"http://127.0.0.1:{pa}/websub/")
            assert f"websub subscribed topic={topic}" in runs.log(a)
            assert "websub subscribed" not in runs.log(b)

            body = atom(topic, [("a4", "Pushed story"), *third])
            assert await hub.publish(topic, body) == [202]
            await fake.wait_for_messages(2, webhook_id=webhook, within=15)
            await asyncio.sleep(2)  # room for a duplicate to show up
            titles = [m.embeds[0]["title"] for m in fake.messages(webhook_id=webhook)]
            assert titles == ["Third story", "Pushed story"]

            # the hub delivers the same document again: nothing new
            assert await hub.publish(topic, body) == [202]
            await asyncio.sleep(2)
            titles = [m.embeds[0]["title"] for m in fake.messages(webhook_id=webhook)]
            assert titles == ["Third story", "Pushed story"]
            assert len(hub.requests) == 1
        finally:
            await runs.stop()
        stopped_cleanly(runs)
        print(f"subscribed {subscribed_after:.1f} s after the start")


# -- inbound hooks ----------------------------------------------------------------------


async def post_hook(
    session: aiohttp.ClientSession, port: int, delivery: str, text: str
) -> tuple[int, dict[str, Any], str | None]:
    async with session.post(
        f"http://127.0.0.1:{port}/hooks/{HOOK_TOKEN}",
        json={"text": text},
        headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery},
    ) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def early_in_a_minute(margin: float = 10.0) -> None:
    """The hook rate counts per clock minute: leave room for a burst within one."""
    now = datetime.now(UTC)
    into = now.second + now.microsecond / 1e6
    if into > 60 - margin:
        await asyncio.sleep(60 - into + 0.3)


@needs_postgres
async def test_hooks_across_processes(tmp_path: Path, pg_database: str) -> None:
    pa, pb = free_port(), free_port()
    async with FakeDiscord(webhook_limit=None) as fake:
        fake.add_guild(GUILD, name="Harbour")
        fake.add_channel(NEWS, guild_id=GUILD, name="news")
        webhook, _ = fake.add_webhook(NEWS, guild_id=GUILD)
        config = config_file(
            tmp_path,
            pg_database,
            fake,
            public_port=pa,
            extra=[
                "hook_rate_per_minute = 4",
                "[[hooks]]",
                f'webhook = "{fake.webhook_url(webhook)}"',
                f'token = "{HOOK_TOKEN}"',
                'template = "{body.text}"',
            ],
        )
        assert len(HOOK_TOKEN) == 40
        runs = Processes(tmp_path, config)
        try:
            await start_two(runs, pa, pb)
            await early_in_a_minute()
            async with aiohttp.ClientSession() as session:
                # one delivery id sent to both at once: one item
                first = await asyncio.gather(
                    post_hook(session, pa, "d-1", "one"), post_hook(session, pb, "d-1", "one")
                )
                assert [status for status, _, _ in first] == [202, 202], first
                assert sorted(bool(body.get("duplicate")) for _, body, _ in first) == [
                    False,
                    True,
                ], first
                # then alternating: the rate (4 a minute) is shared by both processes
                third = await post_hook(session, pa, "d-2", "two")
                fourth = await post_hook(session, pb, "d-3", "three")
                assert (third[0], fourth[0]) == (202, 202), (third, fourth)
                status, body, retry_after = await post_hook(session, pa, "d-4", "four")
                assert status == 429, body
                assert retry_after is not None
                assert 1 <= int(retry_after) <= 60
                assert body == {"status": "rate limited", "retry_after": int(retry_after)}
            await fake.wait_for_messages(3, webhook_id=webhook, within=15)
            await asyncio.sleep(2)  # room for a duplicate to show up
            contents = sorted(m.content for m in fake.messages(webhook_id=webhook))
            assert contents == ["one", "three", "two"]
        finally:
            await runs.stop()
        stopped_cleanly(runs)
        logs = runs.all_logs()
        assert "hook post accepted" in logs  # the logs were captured
        assert HOOK_TOKEN not in logs
