"""The real discord.py client against the fake Discord: gateway, app commands, interactions
and the REST routes a feed bot uses. No mocks: discord.py talks HTTP and websocket to
loopback, with ``Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` pointed at the fake."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands

from tests.fakes.fake_discord import (
    EPHEMERAL,
    LOADING,
    MANAGE_GUILD,
    VIEW_CHANNEL,
    FakeDiscord,
    RateLimit,
)

TOKEN = "fake-bot-token"
GUILD = 900_000_000_000_000_001
TEXT = 900_000_000_000_000_010
NEWS = 900_000_000_000_000_011
FORUM = 900_000_000_000_000_012
MOD = 900_000_000_000_000_100
GUEST = 900_000_000_000_000_101
OTHER_GUILD = 900_000_000_000_000_002
SUBSCRIPTIONS = ["example.com/feed.xml", "blog.example.org/atom", "news.invalid/rss"]


class FeedBot(commands.Bot):
    """A tiny bot shaped like feedhook's: a guild-only /feed group, ephemeral replies."""

    def __init__(self) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.webhooks = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            guild_ready_timeout=0.1,
        )
        self.command_errors: list[app_commands.AppCommandError] = []
        self.command_failed = asyncio.Event()
        self.tree.error(self._on_tree_error)
        self.tree.add_command(self._feed_group(), guild=discord.Object(GUILD))

    async def _on_tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        self.command_errors.append(error)
        self.command_failed.set()

    def _feed_group(self) -> app_commands.Group:
        feed = app_commands.Group(
            name="feed",
            description="Manage feed subscriptions",
            guild_only=True,
            default_permissions=discord.Permissions(manage_guild=True),
        )

        @feed.command(description="Subscribe a channel to a feed")
        async def add(
            interaction: discord.Interaction,
            url: str,
            channel: discord.TextChannel | None = None,
            backfill: app_commands.Range[int, 0, 10] = 0,
        ) -> None:
            target = channel or interaction.channel
            assert isinstance(target, discord.TextChannel)
            await interaction.response.send_message(
                f"added {url} to #{target.name} (backfill {backfill}, "
                f"by {interaction.user.id}, manage_guild={interaction.permissions.manage_guild}, "
                f"manage_webhooks={interaction.app_permissions.manage_webhooks})",
                ephemeral=True,
            )

        @feed.command(description="Unsubscribe")
        async def remove(interaction: discord.Interaction, subscription: str) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.followup.send(f"removed {subscription}", ephemeral=True)

        @remove.autocomplete("subscription")
        async def remove_choices(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return [
                app_commands.Choice(name=s, value=s)
                for s in SUBSCRIPTIONS
                if current.lower() in s.lower()
            ]

        @feed.command(description="Create the relay webhook")
        async def hook(interaction: discord.Interaction, channel: discord.TextChannel) -> None:
            await interaction.response.defer(ephemeral=True)
            try:
                webhook = await channel.create_webhook(name="feedhook")
            except discord.HTTPException as exc:
                await interaction.edit_original_response(content=f"failed: {exc.code}")
            else:
                await interaction.edit_original_response(content=f"webhook {webhook.id}")

        return feed


@pytest.fixture
async def no_leaks() -> AsyncIterator[None]:
    """After everything closed: no pending tasks and no heartbeat threads remain."""
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert pending == []
    for thread in threading.enumerate():
        if isinstance(thread, discord.gateway.KeepAliveHandler):
            thread.join(2)
            assert not thread.is_alive()


@pytest.fixture
async def fake(no_leaks: None) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(bot_token=TOKEN) as server:
        server.add_guild(GUILD, name="Feeds HQ")
        server.add_channel(TEXT, guild_id=GUILD, name="news-feed")
        server.add_channel(NEWS, guild_id=GUILD, name="announcements", type=5)
        server.add_channel(FORUM, guild_id=GUILD, name="discussions", type=15)
        server.add_thread(TEXT, name="weekly")
        server.add_member(GUILD, MOD, permissions=MANAGE_GUILD | VIEW_CHANNEL, username="mod")
        server.add_member(GUILD, GUEST, username="guest")
        yield server
        assert server.internal_errors == []


@pytest.fixture
def point_discord_py_at(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
    )


@pytest.fixture
async def bot(fake: FakeDiscord, point_discord_py_at: None) -> AsyncIterator[FeedBot]:
    client = FeedBot()
    await client.login(TOKEN)
    runner = asyncio.create_task(client.connect(reconnect=False))
    try:
        await fake.wait_until_connected(within=5)
        await asyncio.wait_for(client.wait_until_ready(), 5)
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(runner, 5)
    assert runner.exception() is None


async def sync(bot: FeedBot) -> list[app_commands.AppCommand]:
    return await bot.tree.sync(guild=discord.Object(GUILD))


@contextlib.asynccontextmanager
async def running_bot() -> AsyncIterator[FeedBot]:
    """One more client of the same bot (``point_discord_py_at`` must be in effect), ready."""
    client = FeedBot()
    await client.login(TOKEN)
    runner = asyncio.create_task(client.connect(reconnect=False))
    try:
        await asyncio.wait_for(client.wait_until_ready(), 5)
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(runner, 5)
    assert runner.exception() is None


def sequence(client: FeedBot) -> int | None:
    """The last sequence number the client's gateway connection saw."""
    return client.ws.sequence


# --------------------------------------------------------------------------- gateway


async def test_real_client_connects_and_caches_the_guild(fake: FakeDiscord, bot: FeedBot) -> None:
    assert bot.user is not None
    assert bot.user.id == fake.bot_user_id
    assert bot.user.bot
    assert bot.application_id == fake.application_id

    guild = bot.get_guild(GUILD)
    assert guild is not None
    assert guild.name == "Feeds HQ"
    assert not guild.unavailable
    text = guild.get_channel(TEXT)
    assert isinstance(text, discord.TextChannel)
    assert text.name == "news-feed"
    news = guild.get_channel(NEWS)
    assert isinstance(news, discord.TextChannel)
    assert news.is_news()
    assert isinstance(guild.get_channel(FORUM), discord.ForumChannel)
    [thread] = guild.threads
    assert thread.parent_id == TEXT
    assert thread.name == "weekly"
    assert guild.me.guild_permissions.manage_webhooks
    assert text.permissions_for(guild.me).manage_webhooks
    assert guild.default_role.id == GUILD

    [query] = fake.gateway_queries
    assert query["v"] == "10"
    assert query["encoding"] == "json"
    assert query["compress"] in ("zlib-stream", "zstd-stream")  # discord.py always compresses
    identify = next(p for p in fake.gateway_received if p["op"] == 2)
    assert identify["d"]["token"] == ":token"
    assert identify["d"]["intents"] == bot.intents.value
    assert any(p["op"] == 1 for p in fake.gateway_received)  # the first heartbeat

    fetched = await bot.fetch_channel(TEXT)
    assert isinstance(fetched, discord.TextChannel)
    assert fetched.guild.id == GUILD
    assert (await bot.fetch_guild(GUILD)).name == "Feeds HQ"
    assert {c.id for c in await guild.fetch_channels()} == {TEXT, NEWS, FORUM}
    assert (await bot.application_info()).id == fake.application_id
    shards, url, limits = await bot.http.get_bot_gateway()
    assert (shards, url, limits["max_concurrency"]) == (1, fake.gateway_url, 1)


async def test_global_rate_limit_is_honoured_by_discord_py(fake: FakeDiscord, bot: FeedBot) -> None:
    fake.global_limit = RateLimit(2, 0.2)
    fake.reset_rate_limits()
    channels = await asyncio.gather(*(bot.fetch_channel(TEXT) for _ in range(5)))
    assert {c.id for c in channels} == {TEXT}
    assert fake.count_status(429) >= 1  # discord.py waited retry_after and retried


async def test_login_with_a_wrong_token_fails(fake: FakeDiscord, point_discord_py_at: None) -> None:
    client = FeedBot()
    with pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()


async def test_gateway_events_reach_listeners(fake: FakeDiscord, bot: FeedBot) -> None:
    removed = asyncio.ensure_future(bot.wait_for("guild_channel_delete", timeout=2))
    await fake.dispatch("CHANNEL_DELETE", fake.channel_json(FORUM))
    assert (await removed).id == FORUM
    assert bot.get_channel(FORUM) is None

    removed = asyncio.ensure_future(bot.wait_for("guild_channel_delete", timeout=2))
    await fake.delete_channel(NEWS)  # registry + event in one
    assert (await removed).id == NEWS

    updated = asyncio.ensure_future(bot.wait_for("webhooks_update", timeout=2))
    sent = await fake.dispatch("WEBHOOKS_UPDATE", {"guild_id": str(GUILD), "channel_id": str(TEXT)})
    assert sent == 1
    assert (await updated).id == TEXT

    left = asyncio.ensure_future(bot.wait_for("guild_remove", timeout=2))
    await fake.remove_guild(GUILD)
    assert (await left).id == GUILD
    assert bot.get_guild(GUILD) is None


async def test_reconnect_resumes_the_session(fake: FakeDiscord, bot: FeedBot) -> None:
    await sync(bot)
    resumed = asyncio.ensure_future(bot.wait_for("resumed", timeout=5))
    assert await fake.request_reconnect() == 1
    await resumed
    assert any(p["op"] == 6 for p in fake.gateway_received)
    assert fake.connected_sessions == 1
    assert len(fake.gateway_queries) == 2
    # A resumed session is the same session: one open, never two, and no overlap.
    assert await fake.wait_for_open_sessions(1, within=2) == 1
    assert (fake.identify_count, fake.resume_count) == (1, 1)
    [identified, again] = fake.session_log
    assert (identified.how, again.how) == ("identify", "resume")
    assert identified.session_id == again.session_id
    assert not identified.is_open
    assert again.is_open
    assert fake.max_concurrent_sessions == 1
    assert fake.session_overlaps() == []
    record = await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {"url": "https://a.example/"})
    assert (await record.wait_for_response()).content.startswith("added https://a.example/")


async def test_raw_gateway_protocol(fake: FakeDiscord) -> None:
    """Without discord.py: plain JSON, heartbeats, bad tokens and zlib-stream framing."""
    async with aiohttp.ClientSession() as session:
        url = f"{fake.gateway_url}?v=10&encoding=json"
        async with session.ws_connect(url) as ws:
            hello = await ws.receive_json(timeout=2)
            assert hello["op"] == 10
            assert hello["d"]["heartbeat_interval"] == 41_250
            await ws.send_json({"op": 1, "d": None})
            assert (await ws.receive_json(timeout=2))["op"] == 11
            await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 1, "properties": {}}})
            closing = await ws.receive(timeout=2)
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert closing.data == 4004

        async with session.ws_connect(f"{url}&compress=zlib-stream") as ws:
            inflate = zlib.decompressobj()

            async def receive() -> Any:
                frame = await ws.receive_bytes(timeout=2)
                assert frame.endswith(b"\x00\x00\xff\xff")
                return json.loads(inflate.decompress(frame))

            assert (await receive())["op"] == 10
            await ws.send_json({"op": 2, "d": {"token": TOKEN, "intents": 1, "properties": {}}})
            ready = await receive()
            assert (ready["t"], ready["s"]) == ("READY", 1)
            assert ready["d"]["guilds"] == [{"id": str(GUILD), "unavailable": True}]
            created = await receive()
            assert (created["t"], created["s"]) == ("GUILD_CREATE", 2)
            assert {c["id"] for c in created["d"]["channels"]} == {str(TEXT), str(NEWS), str(FORUM)}
            await fake.wait_until_connected(within=2)


# --------------------------------------------------------------------------- several sessions


async def test_two_clients_both_get_every_event_and_only_one_ack_wins(
    fake: FakeDiscord, point_discord_py_at: None
) -> None:
    """Two processes with one token, as on Discord: both sessions get every dispatch with
    their own sequence numbers, both get the interaction, the second ack is refused."""
    async with running_bot() as first:
        assert await fake.wait_for_open_sessions(1, within=5) == 1
        assert sequence(first) == 2  # READY, GUILD_CREATE
        updated = asyncio.ensure_future(first.wait_for("webhooks_update", timeout=2))
        hooks = {"guild_id": str(GUILD), "channel_id": str(TEXT)}
        assert await fake.dispatch("WEBHOOKS_UPDATE", hooks) == 1
        assert (await updated).id == TEXT
        assert sequence(first) == 3

        async with running_bot() as second:
            assert await fake.wait_for_open_sessions(2, within=5) == 2
            assert sequence(second) == 2
            assert fake.identify_count == 2
            assert fake.max_concurrent_sessions == 2
            assert len(set(fake.open_session_ids)) == 2
            [(older, newer)] = fake.session_overlaps()
            assert older.is_open
            assert newer.is_open
            assert (older.how, newer.how) == ("identify", "identify")
            assert older.peer is not None
            assert older.peer.startswith("127.0.0.1:")

            both = (first, second)
            updates = [
                asyncio.ensure_future(c.wait_for("webhooks_update", timeout=2)) for c in both
            ]
            assert await fake.dispatch("WEBHOOKS_UPDATE", hooks) == 2
            assert [(await u).id for u in updates] == [TEXT, TEXT]
            assert (sequence(first), sequence(second)) == (4, 3)  # each session's own numbers

            joined = [asyncio.ensure_future(c.wait_for("guild_join", timeout=2)) for c in both]
            await fake.join_guild(OTHER_GUILD, name="Second")
            assert [(await j).name for j in joined] == ["Second", "Second"]
            deleted = [
                asyncio.ensure_future(c.wait_for("guild_channel_delete", timeout=2)) for c in both
            ]
            await fake.delete_channel(FORUM)
            assert [(await d).id for d in deleted] == [FORUM, FORUM]
            left = [asyncio.ensure_future(c.wait_for("guild_remove", timeout=2)) for c in both]
            await fake.remove_guild(OTHER_GUILD)
            assert [(await g).id for g in left] == [OTHER_GUILD, OTHER_GUILD]
            assert (sequence(first), sequence(second)) == (7, 6)

            await sync(first)  # only one of them syncs
            assert fake.command_sync_count == 1
            [synced] = fake.command_syncs
            assert (synced.guild_id, synced.names, synced.status) == (GUILD, ("feed",), 200)

            seen = [asyncio.ensure_future(c.wait_for("interaction", timeout=2)) for c in both]
            record = await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {"url": "https://both/"})
            assert len(set(record.delivered_to)) == 2
            assert [(await s).id for s in seen] == [record.id, record.id]
            assert (sequence(first), sequence(second)) == (8, 7)
            replies = await record.wait_for_replies(2)
            assert [(r.kind, r.type) for r in replies] == [("callback", 4), ("callback", 4)]
            assert sorted(r.status for r in replies) == [200, 400]
            assert (await record.wait_for_response()).content.startswith("added https://both/")
            failed = [asyncio.ensure_future(c.command_failed.wait()) for c in both]
            _, waiting = await asyncio.wait(failed, timeout=2, return_when=asyncio.FIRST_COMPLETED)
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            [error] = first.command_errors + second.command_errors
            assert isinstance(error, app_commands.CommandInvokeError)
            assert isinstance(error.original, discord.HTTPException)
            assert (error.original.status, error.original.code) == (400, 40060)
            assert error.original.text == "Interaction has already been acknowledged."

            url = f"{fake.api_base}/interactions/{record.id}/{record.token}/callback"
            async with (
                aiohttp.ClientSession() as session,
                session.post(url, json={"type": 4, "data": {"content": "third"}}) as resp,
            ):
                assert resp.status == 400
                assert await resp.json() == {
                    "code": 40060,
                    "message": "Interaction has already been acknowledged.",
                }

        assert await fake.wait_for_open_sessions_at_most(1, within=5) == 1
        assert fake.open_sessions == 1
        assert fake.max_concurrent_sessions == 2  # the peak stays
        [closed] = [s for s in fake.session_log if not s.is_open]
        # discord.py 2.7's Client.close() usually ends up sending 4000 (its read loop closes
        # the socket first), so the session stays resumable: not open, but not forgotten.
        assert closed.close_code in (1000, 4000)
        assert closed.closed_at is not None
        assert closed.closed_at > closed.opened_at
        assert fake.open_session_ids == [s.session_id for s in fake.session_log if s.is_open]

        record = await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {"url": "https://one/"})
        assert len(record.delivered_to) == 1
        [reply] = await record.wait_for_replies(1)
        assert reply.status == 200
        assert len(first.command_errors + second.command_errors) == 1
    assert await fake.wait_for_open_sessions_at_most(0, within=5) == 0
    assert fake.identify_count == 2
    assert fake.command_sync_count == 1
    assert len(fake.session_overlaps()) == 1


async def test_clients_one_after_the_other_never_overlap(
    fake: FakeDiscord, point_discord_py_at: None
) -> None:
    async with running_bot() as first:
        assert await fake.wait_for_open_sessions(1, within=5) == 1
        await first.tree.sync()  # global: nothing
        await sync(first)
        with pytest.raises(TimeoutError, match="2 open gateway session"):
            await fake.wait_for_open_sessions(2, within=0.1)
    assert await fake.wait_for_open_sessions_at_most(0, within=5) == 0
    async with running_bot() as second:
        assert await fake.wait_for_open_sessions(1, within=5) == 1
        record = await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {"url": "https://b/"})
        assert (await record.wait_for_response()).content.startswith("added https://b/")
        assert len(record.delivered_to) == 1
        assert second.command_errors == []
        with pytest.raises(TimeoutError, match="at most 0 open gateway session"):
            await fake.wait_for_open_sessions_at_most(0, within=0.1)

    assert fake.identify_count == 2
    assert fake.max_concurrent_sessions == 1
    assert fake.session_overlaps() == []
    one, two = fake.session_log
    assert one.session_id != two.session_id
    assert one.closed_at is not None
    assert one.closed_at <= two.opened_at
    assert [(s.guild_id, s.names, s.ok) for s in fake.command_syncs] == [
        (None, (), True),
        (GUILD, ("feed",), True),
    ]
    assert fake.command_sync_count == 2
    assert [s.guild_id for s in await fake.wait_for_command_syncs(2, within=1)] == [None, GUILD]


async def test_raw_sessions_numbering_drop_and_resume(fake: FakeDiscord) -> None:
    """Without discord.py: per-session sequence numbers; a session whose websocket drops
    without a clean close is no longer open but keeps its events for the RESUME."""
    url = f"{fake.gateway_url}?v=10&encoding=json"
    identify = {"op": 2, "d": {"token": TOKEN, "intents": 1, "properties": {}}}
    delete = {"id": str(FORUM), "type": 15, "guild_id": str(GUILD)}

    async def dispatches(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[Any]:
        return [await ws.receive_json(timeout=2) for _ in range(count)]

    async with aiohttp.ClientSession() as http:
        a = await http.ws_connect(url)
        b = await http.ws_connect(url)
        try:
            assert (await a.receive_json(timeout=2))["op"] == 10
            await a.send_json(identify)
            ready_a, _ = await dispatches(a, 2)
            assert await fake.dispatch("CHANNEL_DELETE", delete) == 1
            [first] = await dispatches(a, 1)
            assert (first["t"], first["s"]) == ("CHANNEL_DELETE", 3)

            assert (await b.receive_json(timeout=2))["op"] == 10
            await b.send_json(identify)
            ready_b, _ = await dispatches(b, 2)
            assert ready_b["d"]["session_id"] != ready_a["d"]["session_id"]
            assert await fake.wait_for_open_sessions(2, within=2) == 2
            assert await fake.dispatch("CHANNEL_DELETE", delete) == 2
            [on_a], [on_b] = await dispatches(a, 1), await dispatches(b, 1)
            assert (on_a["s"], on_b["s"]) == (4, 3)

            await a.close(code=4000)  # not 1000/1001: the session may be resumed
            assert await fake.wait_for_open_sessions_at_most(1, within=2) == 1
            assert fake.open_session_ids == [ready_b["d"]["session_id"]]
            assert await fake.dispatch("CHANNEL_DELETE", delete) == 2  # kept for a's replay
            [on_b] = await dispatches(b, 1)
            assert on_b["s"] == 4

            a = await http.ws_connect(url)
            assert (await a.receive_json(timeout=2))["op"] == 10
            session_a = ready_a["d"]["session_id"]
            resume = {"token": TOKEN, "session_id": session_a, "seq": 4}
            await a.send_json({"op": 6, "d": resume})
            replayed, resumed = await dispatches(a, 2)
            assert (replayed["t"], replayed["s"]) == ("CHANNEL_DELETE", 5)
            assert (resumed["t"], resumed["s"]) == ("RESUMED", 6)
            assert await fake.wait_for_open_sessions(2, within=2) == 2
        finally:
            await a.close()
            await b.close()
    assert await fake.wait_for_open_sessions_at_most(0, within=2) == 0
    assert (fake.identify_count, fake.resume_count) == (2, 1)
    assert fake.max_concurrent_sessions == 2
    assert [(s.how, s.close_code) for s in fake.session_log] == [
        ("identify", 4000),
        ("identify", 1000),
        ("resume", 1000),
    ]
    assert len(fake.session_overlaps()) == 2  # b overlapped both stretches of a


# --------------------------------------------------------------------------- app commands


async def test_sync_and_a_command_answered_ephemerally(fake: FakeDiscord, bot: FeedBot) -> None:
    [synced] = await sync(bot)
    [stored] = fake.synced_commands(GUILD)
    assert synced.name == "feed"
    assert synced.id == int(stored["id"])
    assert synced.guild_id == GUILD
    assert synced.default_member_permissions == discord.Permissions(manage_guild=True)
    assert [o["name"] for o in stored["options"]] == ["add", "remove", "hook"]
    assert fake.synced_commands() == []
    assert [c.id for c in await sync(bot)] == [synced.id]  # ids survive a re-sync
    assert fake.synced_commands(GUILD)[0]["version"] == stored["version"]  # nothing changed

    record = await fake.invoke(
        GUILD,
        TEXT,
        MOD,
        "feed",
        "add",
        {"url": "https://example.com/feed.xml", "channel": NEWS, "backfill": 3},
    )
    message = await record.wait_for_response()
    assert message.content == (
        f"added https://example.com/feed.xml to #announcements (backfill 3, by {MOD}, "
        "manage_guild=True, manage_webhooks=True)"
    )
    assert message.ephemeral
    assert message.flags == EPHEMERAL
    [response] = record.responses
    assert (response.kind, response.type, response.status) == ("callback", 4, 200)
    assert response.ephemeral
    assert response.elapsed < fake.interaction_deadline

    record = await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {"url": "https://b.example/"})
    message = await record.wait_for_response()
    assert message.content.startswith("added https://b.example/ to #news-feed (backfill 0,")
    assert bot.command_errors == []


async def test_invoke_checks_what_discords_client_would(fake: FakeDiscord, bot: FeedBot) -> None:
    with pytest.raises(LookupError):
        await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {"url": "x"})  # not synced yet
    await sync(bot)
    with pytest.raises(ValueError, match="outside"):
        await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {"url": "x", "backfill": 11})
    with pytest.raises(ValueError, match="required"):
        await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {})
    with pytest.raises(ValueError, match="unknown options"):
        await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {"url": "x", "nope": 1})
    with pytest.raises(ValueError, match="channel type"):
        await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {"url": "x", "channel": FORUM})
    with pytest.raises(ValueError, match="subcommand"):
        await fake.invoke(GUILD, TEXT, MOD, "feed")
    with pytest.raises(PermissionError):  # default_member_permissions: manage_guild
        await fake.invoke(GUILD, TEXT, GUEST, "feed", "add", {"url": "x"})
    record = await fake.invoke(
        GUILD, TEXT, GUEST, "feed", "add", {"url": "x"}, permissions=MANAGE_GUILD
    )
    assert "manage_guild=True" in (await record.wait_for_response()).content


async def test_defer_then_followup_fills_the_thinking_message(
    fake: FakeDiscord, bot: FeedBot
) -> None:
    await sync(bot)
    record = await fake.invoke(
        GUILD, TEXT, MOD, "feed", "remove", {"subscription": "blog.example.org/atom"}
    )
    message = await record.wait_for_response()
    assert message.content == "removed blog.example.org/atom"
    assert message.ephemeral
    assert not message.loading
    assert message is record.original
    assert record.followups == []
    assert [(r.kind, r.type) for r in record.responses] == [("callback", 5), ("followup", None)]
    assert record.responses[0].flags == EPHEMERAL
    assert record.token not in repr(fake.requests)  # the log masks interaction tokens
    assert f"/interactions/{record.id}/:token/callback?with_response=1" in {
        r.path.removeprefix("/api/v10") for r in fake.requests
    }


async def test_defer_then_edit_original_and_create_a_webhook(
    fake: FakeDiscord, bot: FeedBot
) -> None:
    await sync(bot)
    record = await fake.invoke(GUILD, TEXT, MOD, "feed", "hook", {"channel": TEXT})
    message = await record.wait_for_response()
    [hook] = [h for h in fake.webhooks.values() if h.channel_id == TEXT]
    assert message.content == f"webhook {hook.id}"
    assert message.flags == EPHEMERAL  # LOADING cleared by the edit
    assert [(r.kind, r.type) for r in record.responses] == [("callback", 5), ("edit", None)]

    fake.deny_manage_webhooks(NEWS)
    record = await fake.invoke(GUILD, TEXT, MOD, "feed", "hook", {"channel": NEWS})
    assert (await record.wait_for_response()).content == "failed: 50013"


async def test_autocomplete_returns_the_bots_choices(fake: FakeDiscord, bot: FeedBot) -> None:
    await sync(bot)
    choices = await fake.autocomplete(
        GUILD, TEXT, MOD, "feed", "remove", focused="subscription", value="EX"
    )
    assert choices == [
        {"name": "example.com/feed.xml", "value": "example.com/feed.xml"},
        {"name": "blog.example.org/atom", "value": "blog.example.org/atom"},
    ]
    [interaction] = [i for i in fake.interactions.values() if i.type == 4]
    assert [(r.kind, r.type) for r in interaction.responses] == [("callback", 8)]
    with pytest.raises(ValueError, match="no autocomplete"):
        await fake.autocomplete(GUILD, TEXT, MOD, "feed", "add", focused="url")


async def test_late_and_repeated_responses_are_rejected(fake: FakeDiscord, bot: FeedBot) -> None:
    await sync(bot)
    fake.interaction_deadline = 0.0  # the bot is always "too late" now
    record = await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {"url": "https://late/"})
    [reply] = await record.wait_for_replies(1)
    assert (reply.kind, reply.type, reply.status) == ("callback", 4, 404)
    assert not record.acknowledged
    await asyncio.wait_for(bot.command_failed.wait(), 2)
    [error] = bot.command_errors
    assert isinstance(error, app_commands.CommandInvokeError)
    assert isinstance(error.original, discord.NotFound)
    assert error.original.code == 10062

    fake.interaction_deadline = 3.0
    record = await fake.invoke(GUILD, TEXT, MOD, "feed", "add", {"url": "https://once/"})
    await record.wait_for_response()
    url = f"{fake.api_base}/interactions/{record.id}/{record.token}/callback"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"type": 4, "data": {"content": "again"}}) as resp,
    ):
        assert resp.status == 400
        assert resp.headers["Content-Type"] == "application/json"
        assert (await resp.json())["code"] == 40060
    assert LOADING not in (m.flags for m in record.messages)


# --------------------------------------------------------------------------- webhooks


async def test_create_list_execute_and_delete_webhooks(fake: FakeDiscord, bot: FeedBot) -> None:
    channel = bot.get_channel(TEXT)
    assert isinstance(channel, discord.TextChannel)
    manual_id, _ = fake.add_webhook(TEXT, guild_id=GUILD, name="Made by hand")

    updated = asyncio.ensure_future(bot.wait_for("webhooks_update", timeout=2))
    webhook = await channel.create_webhook(name="feedhook", avatar=b"\x89PNG\r\n\x1a\nfake")
    assert (await updated).id == TEXT  # Discord sends WEBHOOKS_UPDATE on creation
    assert webhook.token == fake.webhooks[webhook.id].token
    assert webhook.channel_id == TEXT
    assert webhook.guild_id == GUILD
    assert webhook.user is not None
    assert webhook.user.id == fake.bot_user_id
    assert fake.webhooks[webhook.id].application_id == fake.application_id

    listed = {w.id: w for w in await channel.webhooks()}
    assert set(listed) == {manual_id, webhook.id}
    assert listed[webhook.id].token == webhook.token
    assert listed[manual_id].token is None  # not ours: no token
    assert listed[manual_id].user is not None

    sent = await webhook.send("hello through discord.py", username="Feed", wait=True)
    [stored] = fake.messages(channel_id=TEXT)
    assert (stored.id, stored.content, stored.username) == (sent.id, sent.content, "Feed")

    assert (await bot.fetch_webhook(webhook.id)).token == webhook.token
    await webhook.delete()
    assert fake.webhooks[webhook.id].deleted
    assert {w.id for w in await channel.webhooks()} == {manual_id}
    with pytest.raises(discord.NotFound) as missing:
        await bot.fetch_webhook(webhook.id)
    assert missing.value.code == 10015


async def test_webhook_limit_and_missing_permissions(fake: FakeDiscord, bot: FeedBot) -> None:
    channel = bot.get_channel(TEXT)
    assert isinstance(channel, discord.TextChannel)
    for i in range(15):
        await channel.create_webhook(name=f"hook {i}")
    with pytest.raises(discord.HTTPException) as full:
        await channel.create_webhook(name="one too many")
    assert (full.value.status, full.value.code) == (400, 30007)
    assert full.value.text == "Maximum number of webhooks reached (15)"
    with pytest.raises(discord.HTTPException) as bad_name:
        await channel.create_webhook(name="my discord hook")
    assert (bad_name.value.status, bad_name.value.code) == (400, 50035)

    news = bot.get_channel(NEWS)
    assert isinstance(news, discord.TextChannel)
    fake.deny_manage_webhooks(NEWS)
    with pytest.raises(discord.Forbidden) as denied:
        await news.create_webhook(name="feedhook")
    assert (denied.value.status, denied.value.code) == (403, 50013)
    with pytest.raises(discord.Forbidden):
        await news.webhooks()

    assert news.permissions_for(news.guild.me).manage_webhooks
    updated = asyncio.ensure_future(bot.wait_for("guild_channel_update", timeout=2))
    await fake.dispatch("CHANNEL_UPDATE", fake.channel_json(NEWS))
    _, after = await updated
    assert not after.permissions_for(after.guild.me).manage_webhooks
