"""The real feedhook bot (discord.py) against the fake Discord, end to end:
it connects, syncs /feed, answers interactions as Discord sends them, and the
subscriptions it makes deliver new items through webhooks."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.app import App
from bot.config import Config
from bot.discord.client import APOLOGY
from tests.conftest import Doc, FeedServer
from tests.fakes.fake_discord import MANAGE_WEBHOOKS, VIEW_CHANNEL, FakeDiscord
from tests.fakes.fake_services import CHANNEL_ID, Account, FakeServices, Tweet
from tests.fakes.fake_social import FakeSocial
from tests.test_poller import rss

TOKEN = "fake-bot-token"
GUILD, OTHER_GUILD = 910_000_000_000_000_001, 920_000_000_000_000_001
NEWS, FORUM, FULL = 910_000_000_000_000_010, 910_000_000_000_000_012, 910_000_000_000_000_013
OTHER_CHANNEL = 920_000_000_000_000_010
ADMIN, GUEST, OTHER_ADMIN = (
    930_000_000_000_000_001,
    930_000_000_000_000_002,
    930_000_000_000_000_003,
)


@dataclass
class World:
    fake: FakeDiscord
    app: App
    feeds: FeedServer

    async def run(
        self,
        subcommand: str,
        *,
        user: int = ADMIN,
        guild: int = GUILD,
        at: int = NEWS,
        **options: Any,
    ) -> str:
        """Invoke ``/feed subcommand`` from channel ``at``; the text the user finally sees."""
        interaction = await self.fake.invoke(guild, at, user, "feed", subcommand, options)
        message = await interaction.wait_for_response(within=10)
        assert message.ephemeral, "feed commands answer only the person who asked"
        return message.content

    async def reply(self, subcommand: str, **options: Any) -> Any:
        interaction = await self.fake.invoke(GUILD, NEWS, ADMIN, "feed", subcommand, options)
        return await interaction.wait_for_response(within=10)


@asynccontextmanager
async def running_world(
    tmp_path: Path,
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
    *,
    sources: dict[str, Any] | None = None,
    max_subscriptions: int = 3,
    http_listen: str = "",
    public_url: str = "",
) -> AsyncIterator[World]:
    # The bot points discord.py at the fake (class attributes): put them back afterwards.
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket,
        "DEFAULT_GATEWAY",
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
    )
    async with FakeDiscord(bot_token=TOKEN, webhook_limit=None, channel_limit=None) as fake:
        fake.add_guild(GUILD, name="Harbour")
        fake.add_channel(NEWS, guild_id=GUILD, name="news")
        fake.add_channel(FORUM, guild_id=GUILD, name="articles", type=15)
        fake.add_channel(FULL, guild_id=GUILD, name="full")
        fake.add_member(GUILD, ADMIN, permissions=MANAGE_WEBHOOKS | VIEW_CHANNEL)
        fake.add_member(GUILD, GUEST, permissions=VIEW_CHANNEL)
        fake.add_guild(OTHER_GUILD, name="Elsewhere")
        fake.add_channel(OTHER_CHANNEL, guild_id=OTHER_GUILD, name="general")
        fake.add_member(OTHER_GUILD, OTHER_ADMIN, permissions=MANAGE_WEBHOOKS | VIEW_CHANNEL)
        config = Config.model_validate(
            {
                "discord": {
                    "token": TOKEN,
                    "api_base": fake.api_base,
                    "gateway_url": fake.gateway_url,
                    "guild_ids": [GUILD, OTHER_GUILD],
                    "max_subscriptions_per_guild": max_subscriptions,
                },
                "database": {"url": f"sqlite:///{tmp_path / 'bot.db'}"},
                "polling": {
                    "interval": 0.5,
                    "min_interval": 0.5,
                    "jitter": 0,
                    "allowed_hosts": ["127.0.0.1"],
                    "timeout": 5,
                },
                "logging": {"level": "DEBUG"},
                "http": {"listen": http_listen, "public_url": public_url},
                **({"sources": sources} if sources else {}),
            }
        )
        app = App(config, bot_options={"guild_ready_timeout": 0.1})
        await app.start()
        try:
            await fake.wait_until_connected(within=10)
            for _ in range(200):  # the fake has no "synced" event to wait on
                if fake.synced_commands(GUILD) and fake.synced_commands(OTHER_GUILD):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the bot never synced its commands")
            # Commands sync before discord.py dispatches 'ready' (it waits for the guilds
            # first). A test that ends before then would close the client under that
            # pending dispatch: "coroutine 'Client._run_event' was never awaited".
            assert app.bot is not None
            await asyncio.wait_for(app.bot.wait_until_ready(), timeout=10)
            yield World(fake, app, feed_server)
        finally:
            await app.stop()
        assert fake.internal_errors == []


@pytest.fixture
async def world(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    async with running_world(tmp_path, feed_server, monkeypatch) as running:
        yield running


def feed_url(world: World, path: str = "/f.xml") -> str:
    return world.feeds.url(path)


def rss_at(
    entries: list[tuple[str, str]], *, title: str, newest: datetime, gap: timedelta
) -> bytes:
    """RSS 2.0 like ``rss()``, dated from ``newest`` back by ``gap`` per entry: the bot runs
    on the wall clock, and staleness judges items by their age."""
    parts = [
        f"<item><guid>{guid}</guid><title>{item_title}</title>"
        f"<link>https://example.com/{guid}</link>"
        f"<pubDate>{format_datetime(newest - gap * index)}</pubDate></item>"
        for index, (guid, item_title) in enumerate(entries)
    ]
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://example.com/</link>{''.join(parts)}"
        "</channel></rss>"
    ).encode()


async def test_commands_are_synced_guild_only_for_manage_webhooks(world: World) -> None:
    (feed,) = world.fake.synced_commands(GUILD)
    assert feed["name"] == "feed"
    assert int(feed["default_member_permissions"]) == MANAGE_WEBHOOKS
    assert feed.get("dm_permission") is False or feed.get("contexts") == [0]
    names = {option["name"] for option in feed["options"]}
    assert names == {
        *("add", "list", "remove", "pause", "resume", "test", "preview", "status"),
        *("format", "filter", "mention", "options", "log", "import", "export", "hook"),
    }


async def test_add_then_a_new_item_arrives_in_the_channel(world: World) -> None:
    world.feeds.docs["/f.xml"] = Doc(rss([("b", "Second"), ("a", "First")], title="Harbour News"))
    message = await world.reply("add", source=feed_url(world), backfill=0)
    assert f"Subscribed <#{NEWS}> to **Harbour News**" in message.content
    assert "2 items in the feed" in message.content
    assert [e["title"] for e in message.embeds] == ["Second"]  # the preview
    hooks = [h for h in world.fake.webhooks.values() if h.channel_id == NEWS]
    assert len(hooks) == 1  # the bot made its webhook
    await asyncio.sleep(1.5)  # first poll: what is there counts as seen
    assert world.fake.messages(channel_id=NEWS) == []
    # dated now: three items a minute apart would read as stale two days after rss()'s T0
    world.feeds.docs["/f.xml"] = Doc(
        rss_at(
            [("c", "Third"), ("b", "Second"), ("a", "First")],
            title="Harbour News",
            newest=datetime.now(UTC),
            gap=timedelta(minutes=1),
        )
    )
    (posted,) = await world.fake.wait_for_messages(1, channel_id=NEWS, within=10)
    assert posted.embeds[0]["title"] == "Third"
    assert posted.username == "Harbour News"
    assert posted.allowed_mentions == {"parse": []}
    # A second subscription in the same channel reuses the bot's webhook.
    world.feeds.docs["/g.xml"] = Doc(rss([("x", "X")], title="Other"))
    assert "Subscribed" in await world.run("add", source=feed_url(world, "/g.xml"))
    assert len([h for h in world.fake.webhooks.values() if h.channel_id == NEWS]) == 1
    listing = await world.run("list")
    assert f"**Harbour News** → <#{NEWS}> · ok" in listing
    assert "**Other**" in listing


async def test_stale_sources_are_flagged_in_list_and_status(world: World) -> None:
    now = datetime.now(UTC)
    hourly = [(f"s{n}", f"Post {n}") for n in range(6)]
    # a bridge still answering with posts that stopped five days ago, hourly before that
    world.feeds.docs["/stale.xml"] = Doc(
        rss_at(
            hourly, title="Frozen Bridge", newest=now - timedelta(days=5), gap=timedelta(hours=1)
        )
    )
    world.feeds.docs["/fresh.xml"] = Doc(
        rss_at(hourly, title="Live Feed", newest=now, gap=timedelta(hours=1))
    )
    # /feed add's first option (issue 5 renames "url" to "source"): read it from the sync
    (feed,) = world.fake.synced_commands(GUILD)
    (add,) = [c for c in feed["options"] if c["name"] == "add"]
    option = add["options"][0]["name"]
    for path in ("/stale.xml", "/fresh.xml"):
        assert "Subscribed" in await world.run("add", **{option: feed_url(world, path)})
    await asyncio.sleep(1.5)  # the first polls store the items
    listing = await world.run("list")
    stale_line, fresh_line = listing.splitlines()
    assert "**Frozen Bridge**" in stale_line
    assert "⚠️ stale: nothing new since <t:" in stale_line
    # a plain feed: its site's doing, not a bridge's (issue 17)
    assert "the site may have stopped publishing or moved its feed; check the site" in stale_line
    assert "bridge" not in stale_line
    assert "**Live Feed**" in fresh_line
    assert "· ok, last post" in fresh_line
    status = await world.run("status")
    assert status.startswith("**2** subscriptions: 2 ok (1 stale),")
    assert "**Stale** (polls work, but nothing new for much longer than usual)" in status
    assert "moved its feed; check the site" in status
    assert status.count("Frozen Bridge") == 1
    assert "Live Feed" not in status
    # the app's periodic check logs it once for operators
    assert await world.app.check_staleness() == {1}
    assert await world.app.check_staleness() == set()


async def test_manage_subscriptions_with_autocomplete(world: World) -> None:
    world.feeds.docs["/f.xml"] = Doc(rss([("a", "Only story")], title="Cat News"))
    await world.run("add", source=feed_url(world))
    choices = await world.fake.autocomplete(
        GUILD, NEWS, ADMIN, "feed", "pause", focused="subscription", value="cat"
    )
    assert [c["name"] for c in choices] == ["#1 Cat News"]
    sub = choices[0]["value"]
    assert "Paused **Cat News**" in await world.run("pause", subscription=sub)
    assert "· paused" in await world.run("list")
    assert "Resumed **Cat News**" in await world.run("resume", subscription=sub)
    await asyncio.sleep(1.0)  # let the first poll store the feed's items
    assert "Posted the newest item" in await world.run("test", subscription=sub)
    (posted,) = await world.fake.wait_for_messages(1, channel_id=NEWS)
    assert posted.embeds[0]["title"] == "Only story"
    assert "Removed **Cat News**" in await world.run("remove", subscription=sub)
    assert "No feed subscriptions yet" in await world.run("list")
    assert "No such subscription" in await world.run("remove", subscription=sub)


async def test_preview_stores_nothing_and_errors_are_one_clear_answer(world: World) -> None:
    world.feeds.docs["/f.xml"] = Doc(rss([("a", "Headline")], title="Daily"))
    world.feeds.docs["/page.html"] = Doc(
        b"<html><body>no feed</body></html>", content_type="text/html"
    )
    message = await world.reply("preview", source=feed_url(world))
    assert "**Daily** (1 items)" in message.content
    assert [e["title"] for e in message.embeds] == ["Headline"]
    assert "No feed subscriptions yet" in await world.run("list")
    assert "not a feed feedhook can read" in await world.run(
        "add", source=feed_url(world, "/page.html")
    )
    assert "could not be fetched: HTTP 404" in await world.run(
        "add", source=feed_url(world, "/missing.xml")
    )
    assert "refuses that address" in await world.run("preview", source="http://localhost:9/feed")
    assert "is not a feed URL" in await world.run("add", source="just words")


async def test_a_member_without_manage_webhooks_is_refused(world: World) -> None:
    # Discord hides the command from them; a server admin can still grant it to a role
    # in Server Settings > Integrations, so the command checks for itself.
    with pytest.raises(PermissionError):
        await world.fake.invoke(GUILD, NEWS, GUEST, "feed", "list", {})
    for command in world.fake._commands[GUILD]:
        command["default_member_permissions"] = None
    world.feeds.docs["/f.xml"] = Doc(rss([("a", "A")]))
    for subcommand, options in (("list", {}), ("add", {"source": feed_url(world)}), ("status", {})):
        text = await world.run(subcommand, user=GUEST, **options)
        assert text == "You need the **Manage Webhooks** permission to manage feeds."
    assert world.fake.webhooks == {}
    assert (
        await world.fake.autocomplete(GUILD, NEWS, GUEST, "feed", "remove", focused="subscription")
        == []
    )


async def test_servers_see_and_touch_only_their_own(world: World) -> None:
    world.feeds.docs["/f.xml"] = Doc(rss([("a", "A")], title="Private Feed"))
    await world.run("add", source=feed_url(world))
    elsewhere = {"user": OTHER_ADMIN, "guild": OTHER_GUILD, "at": OTHER_CHANNEL}
    assert "No feed subscriptions yet" in await world.run("list", **elsewhere)
    assert (
        await world.fake.autocomplete(
            OTHER_GUILD, OTHER_CHANNEL, OTHER_ADMIN, "feed", "remove", focused="subscription"
        )
        == []
    )
    for subcommand in ("remove", "pause", "test"):
        text = await world.run(subcommand, subscription="1", **elsewhere)
        assert "No such subscription on this server" in text
    assert "· ok" in await world.run("list")
    status = await world.run("status", **elsewhere)
    assert status.startswith("**0** subscriptions")


async def test_channel_problems_are_explained(world: World) -> None:
    world.feeds.docs["/f.xml"] = Doc(rss([("a", "A")]))
    world.fake.deny_manage_webhooks(NEWS)
    text = await world.run("add", source=feed_url(world))
    assert f"I need the **Manage Webhooks** permission in <#{NEWS}>" in text
    for n in range(15):
        world.fake.add_webhook(FULL, guild_id=GUILD, name=f"other {n}")
    text = await world.run("add", source=feed_url(world), channel=FULL)
    assert "already has 15 webhooks" in text
    assert "No feed subscriptions yet" in await world.run("list")


async def test_the_server_limit(world: World) -> None:
    for name in "abcd":
        world.feeds.docs[f"/{name}.xml"] = Doc(rss([(name, name)], title=f"Feed {name}"))
    assert "Subscribed" in await world.run("add", source=feed_url(world, "/a.xml"))
    assert "already gets **Feed a**" in await world.run("add", source=feed_url(world, "/a.xml"))
    for name in "bc":
        assert "Subscribed" in await world.run("add", source=feed_url(world, f"/{name}.xml"))
    text = await world.run("add", source=feed_url(world, "/d.xml"))
    assert "already has 3 feed subscriptions" in text


async def test_a_forum_gets_one_post_per_item_titled_by_the_item(world: World) -> None:
    world.feeds.docs["/f.xml"] = Doc(rss([("a", "Old")], title="Articles"))
    assert f"Subscribed <#{FORUM}>" in await world.run("add", source=feed_url(world), channel=FORUM)
    await asyncio.sleep(1.5)
    world.feeds.docs["/f.xml"] = Doc(rss([("b", "Fresh article"), ("a", "Old")], title="Articles"))
    (posted,) = await world.fake.wait_for_messages(1, channel_id=FORUM, within=10)
    assert posted.thread_name == "Fresh article"
    # /feed test makes a forum post too.
    assert "Posted the newest item" in await world.run("test", subscription="1")
    second = (await world.fake.wait_for_messages(2, channel_id=FORUM))[1]
    assert second.thread_name == "Fresh article"


async def test_deleted_channel_webhook_and_guild_disable_with_reasons(world: World) -> None:
    for name in "abc":
        world.feeds.docs[f"/{name}.xml"] = Doc(rss([(name, name)], title=f"Feed {name}"))
    await world.run("add", source=feed_url(world, "/a.xml"))
    await world.run("add", source=feed_url(world, "/b.xml"), channel=FORUM)
    await world.fake.delete_channel(NEWS)
    # From here on, commands come from a channel that still exists.
    (hook,) = [h for h in world.fake.webhooks.values() if h.channel_id == FORUM]
    world.fake.delete_webhook(hook.id)
    await world.fake.dispatch("WEBHOOKS_UPDATE", {"guild_id": str(GUILD), "channel_id": str(FORUM)})
    async with asyncio.timeout(10):
        while True:
            listing = await world.run("list", at=FULL, channel=FORUM)
            if "disabled" in listing:
                break
            await asyncio.sleep(0.1)
    assert "disabled: its webhook was deleted" in listing
    full = await world.run("list", at=FULL)
    assert f"**Feed a** → <#{NEWS}> · disabled: the channel was deleted" in full
    status = await world.run("status", at=FULL)
    assert "2 disabled" in status
    world.feeds.docs["/c.xml"] = Doc(rss([("c", "c")], title="Feed c"))
    await world.run("add", source=feed_url(world, "/c.xml"), at=FULL)
    await world.fake.remove_guild(GUILD)
    for _ in range(200):  # GUILD_DELETE is handled in the bot's own time
        if not any(v.enabled for v in await world.app.store.guild_subscriptions(GUILD)):
            break
        await asyncio.sleep(0.05)
    reasons = {v.disabled_reason for v in await world.app.store.guild_subscriptions(GUILD)}
    assert "the bot was removed from the server" in reasons


async def test_an_unexpected_error_gets_an_apology_and_a_log_line(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database on fire")

    assert world.app.bot is not None
    monkeypatch.setattr(world.app.bot.services, "status", broken)
    text = await world.run("status")
    assert text == APOLOGY
    assert "command failed command=feed status" in caplog.text
    assert "database on fire" in caplog.text


async def test_a_wrong_token_is_one_clear_line(tmp_path: Path) -> None:
    async with FakeDiscord(bot_token="the-right-token") as fake:
        config = tmp_path / "config.toml"
        config.write_text(
            "[discord]\n"
            f'token = "wrong-token"\napi_base = "{fake.api_base}"\n'
            f'gateway_url = "{fake.gateway_url}"\n'
            f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n',
            encoding="utf-8",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    last = err.decode().strip().splitlines()[-1]
    assert last == (
        "feedhook: Discord refused the bot token (discord.token or FEEDHOOK_DISCORD_TOKEN); "
        "copy it again from the Developer Portal, Bot > Reset Token"
    )
    assert "wrong-token" not in err.decode()


async def test_every_kind_of_source_is_added_by_its_form_and_posts_as_described(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/feed add with each form of issue 5; the newest two items of each (backfill) arrive
    in the channel, social posts under their author's name and face, linked to the original."""
    services = await FakeServices(bridge="nitter").start()
    services.accounts["jack"] = Account(
        tweets=[
            Tweet(7, "Hello from X", minutes=1),
            Tweet(8, "Two pictures", images=("A", "B"), minutes=2),
        ]
    )
    try:
        async with FakeSocial() as social:
            settings = {
                "x": {"bridges": [services.base]},
                "bluesky": {"api_base": social.base_url},
                "youtube": {"base_url": services.base},
                "reddit": {"base_url": services.base},
            }
            async with running_world(
                tmp_path, feed_server, monkeypatch, sources=settings, max_subscriptions=10
            ) as world:
                forms = {
                    "x:@jack": "Jack Example (@jack)",
                    "bsky:alice": "Alice Liddell 🐇 (@alice.bsky.social)",
                    f"{social.base_url}/@alice": "Alice ✨ (@alice@social.example)",
                    f"https://www.youtube.com/channel/{CHANNEL_ID}": "Example Channel",
                    "https://www.reddit.com/r/python": "python",
                    services.url("/feed-1.1.json"): "Harbour Notes",
                }
                for form in forms:
                    answer = await world.run("add", source=form, backfill=2)
                    assert answer.startswith(f"Subscribed <#{NEWS}> to **"), (form, answer)
                expected = dict.fromkeys(forms.values(), 2)
                expected["python"] = 1  # the Reddit feed holds one post
                messages = await world.fake.wait_for_messages(
                    sum(expected.values()), channel_id=NEWS, within=20
                )
                by_name: dict[str, list[Any]] = {}
                for message in messages:
                    by_name.setdefault(message.username, []).append(message)
                assert {name: len(got) for name, got in by_name.items()} == expected
                jack = by_name["Jack Example (@jack)"]
                assert [m.embeds[0]["url"] for m in jack] == [
                    "https://x.com/jack/status/7",
                    "https://x.com/jack/status/8",
                ]
                assert jack[0].avatar_url  # the account's face, not the bot's
                gallery = jack[1].embeds
                assert len(gallery) == 2
                assert {e["url"] for e in gallery} == {"https://x.com/jack/status/8"}
                for name in forms.values():
                    for message in by_name[name]:
                        assert message.allowed_mentions == {"parse": []}
                        assert message.embeds[0]["url"].startswith(("https://", "http://127.0.0.1"))
                bsky = by_name["Alice Liddell 🐇 (@alice.bsky.social)"]
                assert all(m.embeds[0]["url"].startswith("https://bsky.app/profile/") for m in bsky)
                listing = await world.run("list")
                assert listing.count(f"→ <#{NEWS}>") == len(forms)
    finally:
        await services.close()
