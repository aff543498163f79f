"""What an operator without a bot reads: `feedhook status` (disabled and paused
subscriptions with reason, since when and what to do; honest next-poll wording) and
the run's log line for every message Discord accepts."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from sqlalchemy.engine import Connection

from bot.cli import _next_poll, _subscription_advice, _subscription_line
from bot.models import SourceHealth, SubscriptionState, WebhookTarget
from bot.storage.db import Database, alembic_config, head_revision
from bot.storage.store import ConfigFeed, Store
from tests.conftest import Doc, FeedServer
from tests.fakes.fake_discord import FakeDiscord
from tests.test_cli import db_rows, feedhook, start_run, wait_for, write_config
from tests.test_poller import rss

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def relay_config(tmp_path: Path, fake: FakeDiscord, feeds: list[tuple[str, int]]) -> Path:
    """A config relaying each (feed URL, webhook id) pair to the fake Discord."""
    config = write_config(tmp_path, interval="1s")
    lines = ["[discord]", f'api_base = "{fake.api_base}"']
    for url, webhook_id in feeds:
        lines += ["[[feeds]]", f'url = "{url}"', f'webhook = "{fake.webhook_url(webhook_id)}"']
    config.write_text(config.read_text() + "\n".join(lines) + "\n")
    return config


async def test_status_shows_disabled_and_paused_subscriptions(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.docs["/a.xml"] = Doc(rss([("a1", "A one")], title="Alpha"))
    feed_server.docs["/b.xml"] = Doc(rss([("b1", "B one")], title="Beta"))
    db = tmp_path / "feedhook.db"
    async with FakeDiscord(webhook_limit=None, channel_limit=None) as fake:
        live, _ = fake.add_webhook(4242, guild_id=1)
        doomed, doomed_token = fake.add_webhook(4343, guild_id=1)
        config = relay_config(
            tmp_path,
            fake,
            [(feed_server.url("/a.xml"), live), (feed_server.url("/b.xml"), doomed)],
        )
        fake.delete_webhook(doomed)
        proc = await start_run(config)
        await wait_for(lambda: db_rows(db, "SELECT count(*) FROM items") == [(2,)])
        # a new item for each: the live webhook posts it, the deleted one answers 404
        feed_server.docs["/a.xml"] = Doc(rss([("a2", "A two"), ("a1", "A one")], title="Alpha"))
        feed_server.docs["/b.xml"] = Doc(rss([("b2", "B two"), ("b1", "B one")], title="Beta"))
        await wait_for(
            lambda: db_rows(db, "SELECT count(*) FROM subscriptions WHERE enabled = 0") == [(1,)]
        )
        await fake.wait_for_messages(1, within=20)
        proc.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0
    err = err_bytes.decode()
    assert doomed_token not in err

    # a subscription made from Discord, then paused there
    database = Database(f"sqlite:///{db}")
    store = Store(database)
    sub_id = await store.create_subscription(
        source_url=feed_server.url("/a.xml"),
        guild_id=77,
        channel_id=88,
        target=WebhookTarget(999, "discord-made-token"),
        backfill=0,
        options={},
        min_interval=60,
        now=datetime.now(UTC),
    )
    assert sub_id is not None
    assert await store.set_paused(
        77, sub_id, paused=True, now=datetime.now(UTC) - timedelta(hours=3)
    )
    await database.dispose()

    code, out, err = await feedhook("status", "--config", str(config))
    assert code == 0, err
    assert doomed_token not in out
    assert "discord-made-token" not in out
    assert out.startswith("2 sources, 4 items seen, 1 delivery queued\n")
    assert "feedhook run: not running\n" in out
    alpha, beta = out.split("\n[")[1:]
    assert alpha.startswith("1] Alpha\n")
    assert "; 1 active subscription, 1 paused\n" in alpha
    assert (
        f"  subscription {sub_id} (channel 88 in server 77, from /feed) PAUSED for 3h\n"
        "    what to do: resume it with /feed resume in Discord\n"
    ) in alpha
    assert beta.startswith("2] Beta\n")
    # the source is no longer polled: say so, not "next poll 58s ago"
    assert "; not polled: no active subscription; 0 active subscriptions, 1 disabled\n" in beta
    disabled = re.search(
        rf"  subscription 2 \(webhook {doomed}, from the config file\) DISABLED for (\d+[sm]): "
        r"(.*)\n    what to do: (.*)\n",
        beta,
    )
    assert disabled is not None, beta
    assert "the webhook was deleted or its token is wrong (HTTP 404)" in disabled[2]
    assert disabled[3] == (
        "put a working webhook URL in its [[feeds]] entry of the config file and restart feedhook"
    )


async def test_each_accepted_message_is_logged_with_source_and_link(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.docs["/a.xml"] = Doc(rss([("a1", "A one")], title="Alpha"))
    db = tmp_path / "feedhook.db"
    async with FakeDiscord(webhook_limit=None, channel_limit=None) as fake:
        hook, token = fake.add_webhook(4242, guild_id=1)
        config = relay_config(tmp_path, fake, [(feed_server.url("/a.xml"), hook)])
        proc = await start_run(config)
        await wait_for(lambda: db_rows(db, "SELECT count(*) FROM items") == [(1,)])
        feed_server.docs["/a.xml"] = Doc(rss([("a2", "A two"), ("a1", "A one")], title="Alpha"))
        (message,) = await fake.wait_for_messages(1, within=20)
        await wait_for(lambda: db_rows(db, "SELECT state FROM outbox") == [("sent",)])
        proc.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 15)
    err = err_bytes.decode()
    assert token not in err
    source = feed_server.url("/a.xml")
    # the poll lines name the source by its URL and title, and the first poll says why
    # nothing was posted
    assert re.search(
        rf"new items url={re.escape(source)} title=\"Alpha\" source=1 new=1 queued=0 "
        r"first_poll=True \(first poll: what the source has now counts as seen; "
        r"later items are posted\)",
        err,
    ), err
    assert f'new items url={source} title="Alpha" source=1 new=1 queued=1 first_poll=False\n' in err
    # one INFO line per message Discord accepted: source, item link, subscription, message id
    posted = [line for line in err.splitlines() if " posted " in line]
    assert posted == [line for line in err.splitlines() if line.endswith(f"message={message.id}")]
    assert len(posted) == 1
    assert posted[0].split(" INFO bot.delivery: ", 1)[1] == (
        f"posted url={source} link=https://example.com/a2 subscription=1 message={message.id}"
    )


# -- the wording, pure ----------------------------------------------------------------


def health(**changes: object) -> SourceHealth:
    values: dict[str, object] = {
        "source_id": 1,
        "url": "https://blog.example/feed.xml",
        "title": "Blog",
        "last_success_at": NOW - timedelta(minutes=5),
        "last_polled_at": NOW - timedelta(minutes=5),
        "consecutive_failures": 0,
        "failing_since": None,
        "last_error": None,
        "newest_item_at": None,
        "next_poll_at": NOW + timedelta(minutes=5),
        "subscriptions": 1,
    }
    values.update(changes)
    return SourceHealth(**values)  # type: ignore[arg-type]


def test_next_poll_says_what_really_happens() -> None:
    assert _next_poll(health(), True, NOW) == "next poll due in 5m"
    assert _next_poll(health(), None, NOW) == "next poll due in 5m"  # PostgreSQL: unknown
    overdue = health(next_poll_at=NOW - timedelta(seconds=58))
    assert _next_poll(overdue, False, NOW) == "next poll due now (feedhook is not running)"
    assert _next_poll(overdue, True, NOW) == "next poll due now"
    stuck = health(next_poll_at=NOW - timedelta(days=3))
    assert _next_poll(stuck, None, NOW) == "next poll overdue by 3d"
    assert _next_poll(stuck, False, NOW) == "next poll overdue by 3d (feedhook is not running)"
    assert _next_poll(health(subscriptions=0), False, NOW) == "not polled: no active subscription"


def state(**changes: object) -> SubscriptionState:
    values: dict[str, object] = {
        "id": 5,
        "source_id": 1,
        "origin": "config",
        "webhook_id": 123,
        "thread_id": None,
        "guild_id": None,
        "channel_id": None,
        "enabled": False,
        "paused": False,
        "disabled_reason": "the webhook was deleted or its token is wrong (HTTP 404)",
        "disabled_at": NOW - timedelta(days=2),
        "paused_at": None,
    }
    values.update(changes)
    return SubscriptionState(**values)  # type: ignore[arg-type]


def test_each_kind_of_stopped_subscription_gets_its_own_advice() -> None:
    assert _subscription_line(state(), NOW) == (
        "  subscription 5 (webhook 123, from the config file) DISABLED for 2d: "
        "the webhook was deleted or its token is wrong (HTTP 404)\n"
        "    what to do: put a working webhook URL in its [[feeds]] entry of the config file "
        "and restart feedhook\n"
    )
    removed = state(disabled_reason="removed from the config file")
    assert _subscription_advice(removed) == (
        "nothing, unless you want it back: then add its [[feeds]] entry to the config file"
    )
    left = state(
        origin="discord", guild_id=7, disabled_reason="the bot was removed from the server"
    )
    assert _subscription_advice(left).startswith("invite the bot back to the server")
    in_thread = state(origin="discord", guild_id=7, channel_id=8, thread_id=9)
    assert "(channel 8, thread 9 in server 7, from /feed)" in _subscription_line(in_thread, NOW)
    assert "(webhook 123, thread 9, from the config file)" in _subscription_line(
        state(thread_id=9), NOW
    )
    from_discord = state(origin="discord", guild_id=7, channel_id=8, disabled_reason="gone")
    assert "(channel 8 in server 7, from /feed) DISABLED" in _subscription_line(from_discord, NOW)
    assert _subscription_advice(from_discord) == (
        "remove it with /feed remove and add it again with /feed add in Discord"
    )
    # disabled before this version recorded when: no made-up time
    assert "DISABLED: " in _subscription_line(state(disabled_at=None), NOW)
    paused = state(origin="discord", enabled=True, paused=True, paused_at=NOW, guild_id=7)
    assert "PAUSED for 0s" in _subscription_line(paused, NOW)


async def test_a_replaced_webhook_leaves_a_removed_subscription_not_a_broken_one(
    store: Store,
) -> None:
    url = "https://blog.example/feed.xml"
    old, new = WebhookTarget(1, "old-token"), WebhookTarget(2, "new-token")
    await store.sync_config_feeds([ConfigFeed(url, old)], now=NOW)
    (first,) = await store.subscription_states()
    assert first.active
    assert first.disabled_at is None
    await store.disable_webhook(1, reason="the webhook was deleted (HTTP 404)", now=NOW)
    # the operator makes a new webhook and puts its URL in the file
    later = NOW + timedelta(hours=1)
    await store.sync_config_feeds([ConfigFeed(url, new)], now=later)
    states = {s.webhook_id: s for s in await store.subscription_states()}
    assert states[2].active
    assert not states[1].enabled
    # what status then says of the old one: the file no longer lists it, nothing to fix
    assert states[1].disabled_reason == "removed from the config file"
    assert states[1].disabled_at == later
    assert _subscription_advice(states[1]).startswith("nothing, unless you want it back")


async def test_status_refuses_a_database_behind_this_version(tmp_path: Path) -> None:
    db_file = tmp_path / "feedhook.db"
    database = Database(f"sqlite:///{db_file}")
    await database.run_sync(_upgrade_to("0003"))
    await database.dispose()
    config = write_config(tmp_path)
    code, out, err = await feedhook("status", "--config", str(config))
    assert (code, out) == (1, "")
    assert err.strip().splitlines() == [
        f"feedhook: the database is at revision 0003, this feedhook reads {head_revision()}; "
        "run `feedhook db upgrade` (or restart `feedhook run`, which upgrades it)"
    ]


def _upgrade_to(revision: str) -> Callable[[Connection], None]:
    def upgrade(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    return upgrade


async def test_since_when_is_recorded_and_cleared(store: Store) -> None:
    url = "https://blog.example/feed.xml"
    sub_id = await store.create_subscription(
        source_url=url,
        guild_id=7,
        channel_id=8,
        target=WebhookTarget(3, "t"),
        backfill=0,
        options={},
        min_interval=60,
        now=NOW,
    )
    assert sub_id is not None

    async def only() -> SubscriptionState:
        (found,) = [s for s in await store.subscription_states() if s.id == sub_id]
        return found

    assert await store.set_paused(7, sub_id, paused=True, now=NOW)
    assert await store.set_paused(7, sub_id, paused=True, now=NOW + timedelta(hours=1))
    assert (await only()).paused_at == NOW  # pausing again: still paused since the first
    assert await store.set_paused(7, sub_id, paused=False, now=NOW + timedelta(hours=2))
    assert (await only()).paused_at is None
    await store.disable_where(reason="the channel was deleted", channel_id=8, now=NOW)
    gone = await only()
    assert (gone.enabled, gone.disabled_at) == (False, NOW)
    # a config subscription Discord refused, then given a new token in the file: re-enabled
    await store.sync_config_feeds([ConfigFeed(url, WebhookTarget(4, "old"))], now=NOW)
    await store.disable_webhook(4, reason="refused (HTTP 403)", now=NOW)
    (refused,) = [s for s in await store.subscription_states() if s.webhook_id == 4]
    assert (refused.enabled, refused.disabled_at) == (False, NOW)
    await store.sync_config_feeds([ConfigFeed(url, WebhookTarget(4, "new"))], now=NOW)
    (fixed,) = [s for s in await store.subscription_states() if s.webhook_id == 4]
    assert (fixed.enabled, fixed.disabled_reason, fixed.disabled_at) == (True, None, None)


def test_a_silent_process_is_flagged_before_it_is_forgotten() -> None:
    from bot.cli import _process_line
    from bot.storage.store import ProcessInfo

    beating = ProcessInfo(
        id=1,
        host="vm",
        pid=10,
        roles=("bot", "delivery", "poller"),
        started_at=NOW - timedelta(minutes=5),
        heartbeat_at=NOW - timedelta(seconds=1),
        gateway=True,
    )
    assert _process_line(beating, NOW) == (
        "process 1: bot,delivery,poller on vm pid 10, up 5m, last heartbeat 1s ago; "
        "holds the Discord gateway\n"
    )
    silent = replace(beating, heartbeat_at=NOW - timedelta(seconds=9), gateway=False)
    assert _process_line(silent, NOW).endswith(
        "last heartbeat 9s ago; silent: taken for dead at 15s\n"
    )
