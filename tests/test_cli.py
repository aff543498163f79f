"""The CLI as users run it: real subprocesses against loopback feed servers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from aiohttp import web

from bot.storage.db import head_revision
from tests.conftest import Doc, FeedServer
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_services import Account, FakeServices, Tweet
from tests.fakes.loopback import start_app
from tests.test_poller import rss

HOOK = "https://discord.com/api/webhooks/{id}/token-{id}"


def write_config(tmp_path: Path, *, feeds: Sequence[str] = (), interval: str = "10m") -> Path:
    lines = [
        "[database]",
        f'url = "sqlite:///{tmp_path / "feedhook.db"}"',
        "[polling]",
        f'interval = "{interval}"',
        "jitter = 0",
        'allowed_hosts = ["127.0.0.1"]',
        'timeout = "5s"',
    ]
    for index, url in enumerate(feeds, start=1):
        lines += ["[[feeds]]", f'url = "{url}"', f'webhook = "{HOOK.format(id=index)}"']
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def feedhook(*args: str, limit: float = 60) -> tuple[int, str, str]:
    """Run the CLI in a subprocess without blocking the loop that serves the feeds."""
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


# -- check ---------------------------------------------------------------------------


async def test_check_prints_every_entry(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("b", "Second &amp; last"), ("a", "First")]))
    config = write_config(tmp_path)
    code, out, err = await feedhook("check", "--config", str(config), feed_server.url("/f.xml"))
    assert code == 0, err
    assert out.startswith("Test feed (rss, 2 entries)")
    assert "Second & last\n  https://example.com/b" in out
    assert "About **First**" in out
    assert not (tmp_path / "feedhook.db").exists()  # check stores nothing


async def test_check_json_is_one_request_body_per_entry(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("b", "@everyone look"), ("a", "A")]))
    config = write_config(tmp_path)
    code, out, err = await feedhook(
        "check", "--json", "--config", str(config), feed_server.url("/f.xml")
    )
    assert code == 0, err
    bodies = json.loads(out)
    assert [b["embeds"][0]["title"] for b in bodies] == ["@everyone look", "A"]
    for body in bodies:
        assert body["allowed_mentions"] == {"parse": []}
        assert body["username"] == "Test feed"
        assert body["embeds"][0]["url"].startswith("https://example.com/")


async def test_check_follows_an_html_page(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.docs["/"] = Doc(
        b'<html><head><link rel="alternate" type="application/atom+xml" href="/f.xml">'
        b"</head></html>",
        content_type="text/html",
    )
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    code, out, err = await feedhook(
        "check", "--config", str(write_config(tmp_path)), feed_server.url("/")
    )
    assert code == 0, err
    assert "Test feed (rss, 1 entries)" in out
    assert f"the feed lives at {feed_server.url('/f.xml')}" in err


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/missing.xml", "404"),
        ("/broken.xml", "not a feed"),
        ("/page.html", "links no RSS, Atom or JSON feed"),
    ],
)
async def test_check_bad_sources_get_one_line(
    tmp_path: Path, feed_server: FeedServer, path: str, expected: str
) -> None:
    feed_server.docs["/broken.xml"] = Doc(b"<rss><channel><title>x</ti", content_type="text/xml")
    feed_server.docs["/page.html"] = Doc(
        b"<html><body>no feed</body></html>", content_type="text/html"
    )
    code, out, err = await feedhook(
        "check", "--config", str(write_config(tmp_path)), feed_server.url(path)
    )
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err


async def test_check_refuses_private_addresses_by_default(feed_server: FeedServer) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    code, _out, err = await feedhook("check", feed_server.url("/f.xml"))
    assert code == 1
    assert "private" in err
    assert "polling.allow" in err
    assert len(err.strip().splitlines()) == 1


async def test_check_rejects_what_is_not_a_url() -> None:
    code, _out, err = await feedhook("check", "not a url")
    assert code == 1
    assert "give an http(s) URL" in err


# -- db upgrade and status ------------------------------------------------------------


async def test_db_upgrade_then_status(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    code, out, err = await feedhook("status", "--config", str(config))
    assert code == 1
    assert f"no database at {tmp_path / 'feedhook.db'}; run `feedhook run`" in err
    assert not (tmp_path / "feedhook.db").exists()
    head = head_revision()
    code, out, _ = await feedhook("db", "upgrade", "--config", str(config))
    assert (code, out.strip()) == (0, f"database upgraded from empty to {head}")
    code, out, _ = await feedhook("db", "upgrade", "--config", str(config))
    assert (code, out.strip()) == (0, f"database already at revision {head}")
    code, out, _ = await feedhook("status", "--config", str(config))
    assert code == 0
    assert out.splitlines() == [
        "0 sources, 0 items seen, 0 deliveries queued",
        "rows: 0 items, 0 deliveries (0 sent, 0 failed); retention.max_age 30d",
        "feedhook run: not running",
    ]


# -- run -----------------------------------------------------------------------------


async def wait_for(predicate: Callable[[], bool], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


def db_rows(db: Path, query: str) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return list(conn.execute(query))
        except sqlite3.OperationalError:  # tables not created yet
            return []


async def start_run(
    config: Path, *, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def test_run_polls_and_stops_cleanly_on_sigterm(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("a", "A")]))
    config = write_config(tmp_path, feeds=[feed_server.url("/f.xml")], interval="1s")
    db = tmp_path / "feedhook.db"
    proc = await start_run(config)
    await wait_for(lambda: db_rows(db, "SELECT count(*) FROM items") == [(1,)])
    feed_server.docs["/f.xml"] = Doc(rss([("b", "B"), ("a", "A")]))
    await wait_for(lambda: db_rows(db, "SELECT count(*) FROM outbox") == [(1,)])
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()
    assert time.monotonic() - started < 10
    assert "feedhook stopped" in err.decode()
    code, out, _ = await feedhook("status", "--config", str(config))
    assert code == 0
    assert "1 source, 2 items seen, 1 delivery queued" in out
    assert "feedhook run: not running" in out
    assert "(feedhook is not running); 1 active subscription\n" in out
    assert "Test feed" in out
    assert "ok;" in out


class GrowingFeeds:
    """Feeds that gain an item on every request, so every poll has something new."""

    def __init__(self) -> None:
        self.served: dict[str, int] = {}

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        count = self.served.get(name, 0) + 1
        self.served[name] = count
        entries = [(f"{name}-{i}", f"{name} item {i}") for i in range(count, 0, -1)]
        return web.Response(body=rss(entries, title=name), content_type="application/rss+xml")


@pytest.fixture
async def growing() -> AsyncIterator[tuple[str, GrowingFeeds]]:
    feeds = GrowingFeeds()
    app = web.Application()
    app.router.add_get("/{name}.xml", feeds.handle)
    runner, base = await start_app(app)
    yield base, feeds
    await runner.cleanup()


async def test_killed_mid_poll_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, growing: tuple[str, GrowingFeeds]
) -> None:
    base, feeds = growing
    names = [f"feed{i}" for i in range(15)]
    config = write_config(tmp_path, feeds=[f"{base}/{n}.xml" for n in names], interval="0.3s")
    db = tmp_path / "feedhook.db"
    for delay in (1.5, 0.9, 1.3, 0.7):
        proc = await start_run(config)
        await wait_for(lambda: bool(db_rows(db, "SELECT count(*) FROM items")))
        await asyncio.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)  # no chance to commit or clean up
        await proc.wait()
    # A last clean run: every feed is polled again after the crashes.
    before = dict(feeds.served)
    proc = await start_run(config)
    await wait_for(lambda: all(feeds.served[n] > before[n] + 1 for n in names), limit=30)
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0

    stored = db_rows(db, "SELECT item_key FROM items")
    keys = [str(row[0]) for row in stored]
    assert len(keys) == len(set(keys))
    queued = [
        str(r[0])
        for r in db_rows(db, "SELECT i.item_key FROM outbox o JOIN items i ON i.id = o.item_id")
    ]
    assert len(queued) == len(set(queued))
    for name in names:
        # The last document served may not have been recorded (the run was stopping),
        # but everything up to the one before it must be: nothing lost.
        upto = feeds.served[name] - 1
        expected = {f"{name}-{i}" for i in range(1, upto + 1)}
        assert expected <= set(keys), name
        # Only what the first successful poll found is seen but not queued:
        # items 1..k for some k; everything after it is queued.
        unqueued = sorted(int(k.rsplit("-", 1)[1]) for k in expected - set(queued))
        assert unqueued == list(range(1, len(unqueued) + 1)), name
        assert len(unqueued) < upto, name


# -- delivery crash safety -----------------------------------------------------------


@pytest.mark.parametrize("with_bot_token", [True, False])
async def test_killed_between_discord_accepting_and_the_commit(
    tmp_path: Path, feed_server: FeedServer, with_bot_token: bool
) -> None:
    feed_server.docs["/f.xml"] = Doc(rss([("c", "Third"), ("b", "Second"), ("a", "First")]))
    async with FakeDiscord(bot_token="bot-token", webhook_limit=None, channel_limit=None) as fake:
        webhook_id, _ = fake.add_webhook(4242, guild_id=1)
        config = write_config(tmp_path)
        extra = [
            "[discord]",
            f'api_base = "{fake.api_base}"',
            f'gateway_url = "{fake.gateway_url}"',
            f'token = "{"bot-token" if with_bot_token else ""}"',
            "[[feeds]]",
            f'url = "{feed_server.url("/f.xml")}"',
            f'webhook = "{fake.webhook_url(webhook_id)}"',
            "backfill = 3",
            "[polling]",
        ]
        text = config.read_text().replace("[polling]", "\n".join(extra))
        config.write_text(text.replace('interval = "10m"', 'interval = "1s"'))
        # Discord stores the first message, then the answer never comes.
        fake.hang_next(count=1, seconds=60, store_first=True)
        proc = await start_run(config)
        await fake.wait_for_messages(1, within=20)
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()

        proc = await start_run(config)
        await fake.wait_for_messages(3 if with_bot_token else 4, within=20)
        await asyncio.sleep(1.0)  # room for a wrong extra message to show up
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()
        titles = [m.embeds[0]["title"] for m in fake.messages()]
        if with_bot_token:
            # Found in the channel: nothing is sent twice.
            assert titles == ["First", "Second", "Third"]
            assert "already in the channel" in err.decode()
        else:
            # No way to look: the one in-doubt message is sent again, and said so.
            assert titles == ["First", "First", "Second", "Third"]
            assert "re-sending in-doubt deliveries" in err.decode()
    states = db_rows(tmp_path / "feedhook.db", "SELECT state FROM outbox ORDER BY id")
    assert states == [("sent",), ("sent",), ("sent",)]


async def test_demo_shows_items_arriving() -> None:
    code, out, err = await feedhook("demo", "--items", "2", "--every", "0.5", limit=60)
    assert code == 0, err
    assert out.count("| Harbour Town News  [BOT]") == 2
    assert "(mentions: none can ping)" in out
    assert "2 message(s) delivered; demo finished." in out


# -- check: source forms ---------------------------------------------------------------


def write_sources_config(tmp_path: Path, extra: str = "") -> Path:
    """No polling.allowed_hosts: a bridge's host passes the SSRF guard on its own."""
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "feedhook.db"}"\n'
        '[polling]\ntimeout = "5s"\n' + extra,
        encoding="utf-8",
    )
    return path


async def test_check_an_x_account_through_a_bridge(tmp_path: Path) -> None:
    bridge = await FakeServices(bridge="nitter").start()
    try:
        bridge.accounts["jack"] = Account(
            tweets=[Tweet(2, "Second post", images=("PIC",), minutes=2), Tweet(1, "First post")]
        )
        config = write_sources_config(tmp_path, f'[sources.x]\nbridges = ["{bridge.base}"]\n')
        code, out, err = await feedhook("check", "--config", str(config), "x:@Jack")
        assert code == 0, err
        assert out.startswith("Jack Example (@jack) (rss, 2 entries)\n  site: https://x.com/jack")
        assert "\n  https://x.com/jack/status/2\n" in out
        assert "Second post" in out
        assert "https://pbs.twimg.com/media/PIC.jpg" in out
        assert bridge.base not in out  # nothing points at the bridge
        code, out, err = await feedhook(
            "check", "--json", "--config", str(config), "https://twitter.com/jack"
        )
        assert code == 0, err
        assert len(json.loads(out)) == 2
    finally:
        await bridge.close()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x:jack", "X has no public feed"),
        ("x:@", "`x:@` is missing the X handle"),
        ("@@x", "`@@x` is not a handle"),
    ],
)
async def test_check_refuses_unusable_sources_in_one_line(
    tmp_path: Path, source: str, expected: str
) -> None:
    code, out, err = await feedhook(
        "check", "--config", str(write_sources_config(tmp_path)), source
    )
    assert code == 1
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"feedhook: {expected}")
    if source == "x:jack":
        assert '[sources.x] bridges = ["https://nitter.example"]' in line


async def test_an_x_feed_without_bridges_is_a_config_error(tmp_path: Path) -> None:
    config = write_sources_config(
        tmp_path, f'[[feeds]]\nurl = "x:jack"\nwebhook = "{HOOK.format(id=1)}"\n'
    )
    code, _out, err = await feedhook("status", "--config", str(config))
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith(f"feedhook: config error in {config}: feeds[0].url: X has no public")
